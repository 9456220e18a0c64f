public import Logging
internal import NIOCore
internal import NIOPosix
internal import NIOHTTP1
internal import Foundation
public import Prometheus
internal import Synchronization

/// `--http-listen`: Prometheus `/metrics`, `/healthz` (the process is alive) and `/readyz` (Redis
/// reachable and plugins loaded — deliberately not the Kubernetes API, so that an API outage does not
/// take every replica out of service at once).
public final class OperationsServer: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let ready: @Sendable () -> Bool
    /// Refreshes the gauges read at scrape time (collectors by status, stream lag and pending).
    private let refresh: @Sendable () -> Void
    /// Exposition text served after the registry's: the metrics plugins declare and update.
    private let extra: @Sendable () -> String
    private let logger: Logger
    private let channel = Mutex<(any Channel)?>(nil)

    public init(registry: PrometheusCollectorRegistry, logger: Logger, ready: @escaping @Sendable () -> Bool,
                refresh: @escaping @Sendable () -> Void = {}, extra: @escaping @Sendable () -> String = { "" }) {
        self.registry = registry
        self.extra = extra
        self.logger = logger
        self.ready = ready
        self.refresh = refresh
    }

    /// Starts listening on `HOST:PORT`; returns the bound port.
    public func start(listen: String) throws -> Int {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
            throw OperationsServerError(description: "--http-listen must be HOST:PORT, got \"\(listen)\"")
        }
        let host = String(listen[..<colon]).isEmpty ? "0.0.0.0" : String(listen[..<colon])
        let handler = OperationsHandlerContext(registry: registry, ready: ready, refresh: refresh, extra: extra)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(OperationsHandler(context: handler))
                }
            }
        let bound = try bootstrap.bind(host: host, port: port).wait()
        channel.withLock { $0 = bound }
        let actual = bound.localAddress?.port ?? port
        logger.info("metrics and health listening", metadata: ["http.address": "\(host):\(actual)"])
        return actual
    }

    public func stop() {
        let current = channel.withLock { current -> (any Channel)? in
            defer { current = nil }
            return current
        }
        try? current?.close().wait()
    }
}

public struct OperationsServerError: Error, CustomStringConvertible {
    public let description: String
}

struct OperationsHandlerContext: Sendable {
    let registry: PrometheusCollectorRegistry
    let ready: @Sendable () -> Bool
    let refresh: @Sendable () -> Void
    let extra: @Sendable () -> String
}

/// One HTTP/1 connection: answers GET /metrics, /healthz and /readyz. Work that may block (Redis)
/// runs on a dispatch queue, never on the event loop.
final class OperationsHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let context: OperationsHandlerContext
    private var path = ""
    private var method = HTTPMethod.GET
    private var keepAlive = true

    init(context: OperationsHandlerContext) { self.context = context }

    func channelRead(context channelContext: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = String(head.uri.split(separator: "?").first ?? "")
            method = head.method
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            let loop = channelContext.eventLoop
            let bound = NIOLoopBound((self, channelContext), eventLoop: loop)
            let path = self.path, method = self.method, handlerContext = self.context
            DispatchQueue.global().async {
                let (status, contentType, body) = Self.respond(method: method, path: path, context: handlerContext)
                loop.execute {
                    let (handler, channelContext) = bound.value
                    handler.write(status: status, contentType: contentType, body: body, context: channelContext)
                }
            }
        }
    }

    static func respond(method: HTTPMethod, path: String, context: OperationsHandlerContext) -> (HTTPResponseStatus, String, [UInt8]) {
        guard method == .GET || method == .HEAD else { return (.methodNotAllowed, "text/plain", Array("method not allowed\n".utf8)) }
        switch path {
        case "/healthz":
            return (.ok, "text/plain", Array("ok\n".utf8))
        case "/readyz":
            return context.ready() ? (.ok, "text/plain", Array("ready\n".utf8)) : (.serviceUnavailable, "text/plain", Array("not ready\n".utf8))
        case "/metrics":
            context.refresh()
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", context.registry.emitToBuffer() + Array(context.extra().utf8))
        default:
            return (.notFound, "text/plain", Array("not found\n".utf8))
        }
    }

    private func write(status: HTTPResponseStatus, contentType: String, body: [UInt8], context channelContext: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        channelContext.write(wrapOutboundOut(.head(head)), promise: nil)
        if method != .HEAD {
            channelContext.write(wrapOutboundOut(.body(.byteBuffer(channelContext.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let keepAlive = self.keepAlive
        // The channel, not the handler context (which is not Sendable), is closed from the callback.
        let channel = channelContext.channel
        channelContext.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
