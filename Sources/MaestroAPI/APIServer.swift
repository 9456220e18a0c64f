internal import GRPCCore
internal import GRPCNIOTransportHTTP2
public import Logging
internal import Foundation
internal import Synchronization

/// Where and how the API listens.
public struct APIServerConfiguration: Sendable {
    /// `HOST:PORT` for TCP, if any.
    public var listen: String?
    /// A Unix domain socket path (created with mode 0600), if any.
    public var socketPath: String?
    /// Calls without `authorization: Bearer <token>` are refused (UNAUTHENTICATED).
    public var token: String?
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// Clients must present a certificate signed by this CA (mutual TLS).
    public var clientCA: String?
    /// Allows TCP on a non-loopback address without a token or TLS.
    public var insecure: Bool
    public var maximumRequestBytes: Int
    /// Concurrent calls one client connection may have open; advertised in the HTTP/2 SETTINGS, so
    /// clients queue calls past it instead of being cut off.
    public var maximumConcurrentStreams: Int

    public init(listen: String? = nil, socketPath: String? = nil, token: String? = nil, tlsCertificate: String? = nil, tlsKey: String? = nil,
                clientCA: String? = nil, insecure: Bool = false, maximumRequestBytes: Int = 1 << 20, maximumConcurrentStreams: Int = 256) {
        self.listen = listen
        self.socketPath = socketPath
        self.token = token
        self.tlsCertificate = tlsCertificate
        self.tlsKey = tlsKey
        self.clientCA = clientCA
        self.insecure = insecure
        self.maximumRequestBytes = maximumRequestBytes
        self.maximumConcurrentStreams = maximumConcurrentStreams
    }

    /// Whether every call is authenticated (by token or by client certificate).
    public var callersAuthenticated: Bool { token != nil || clientCA != nil }

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    /// `host` and `port` of `listen`, checked.
    public func tcpAddress() throws(Invalid) -> (host: String, port: Int)? {
        guard let listen else { return nil }
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw Invalid(description: "--grpc-listen must be HOST:PORT, got \"\(listen)\"")
        }
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = "0.0.0.0" }
        let loopback = host == "127.0.0.1" || host == "localhost" || host == "::1" || host.hasPrefix("127.")
        if !loopback && token == nil && tlsCertificate == nil && !insecure {
            throw Invalid(description: "--grpc-listen \(listen) is not loopback: configure --grpc-token-file or --grpc-tls-cert, or say --grpc-insecure")
        }
        if (tlsCertificate == nil) != (tlsKey == nil) {
            throw Invalid(description: "--grpc-tls-cert and --grpc-tls-key go together")
        }
        if clientCA != nil && tlsCertificate == nil {
            throw Invalid(description: "--grpc-client-ca needs --grpc-tls-cert and --grpc-tls-key")
        }
        return (host, port)
    }
}

/// Refuses calls without the configured bearer token; the health service stays open, as load
/// balancers and kubelets call it without credentials.
struct BearerTokenInterceptor: ServerInterceptor {
    let token: String

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        if context.descriptor.service.fullyQualifiedService == "grpc.health.v1.Health" {
            return try await next(request, context)
        }
        let given = request.metadata["authorization"].first { _ in true }
        let expected = "Bearer \(token)"
        guard case .string(let value)? = given, constantTimeEquals(value, expected) else {
            throw RPCError(code: .unauthenticated, message: "a bearer token is required")
        }
        return try await next(request, context)
    }

    private func constantTimeEquals(_ left: String, _ right: String) -> Bool {
        let a = Array(left.utf8), b = Array(right.utf8)
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }
}

/// The gRPC servers (TCP and/or Unix socket) with the collector API and the health service.
public final class APIServer: Sendable {
    public let configuration: APIServerConfiguration
    private let services: [any RegistrableRPCService]
    private let logger: Logger
    private let servers = Mutex<[GRPCServer<HTTP2ServerTransport.Posix>]>([])
    private let tasks = Mutex<[Task<Void, any Error>]>([])

    public init(configuration: APIServerConfiguration, collectors: OtelCollectorAPI, health: HealthService, logger: Logger) {
        self.configuration = configuration
        self.services = [collectors, health]
        self.logger = logger
    }

    /// Starts listening; returns the bound TCP port (useful with port 0), if TCP is configured.
    @discardableResult
    public func start() async throws -> Int? {
        var transportConfig = HTTP2ServerTransport.Posix.Config.defaults
        transportConfig.rpc.maxRequestPayloadSize = configuration.maximumRequestBytes
        // Left unset, no limit is advertised while swift-nio-http2 still enforces its default of 100
        // streams: a client multiplexing more calls on one connection gets a GOAWAY (PROTOCOL_ERROR).
        transportConfig.http2.maxConcurrentStreams = configuration.maximumConcurrentStreams
        var interceptors: [any ServerInterceptor] = [TracingServerInterceptor()]
        if let token = configuration.token { interceptors.append(BearerTokenInterceptor(token: token)) }
        var boundPort: Int?

        if let (host, port) = try configuration.tcpAddress() {
            let security: HTTP2ServerTransport.Posix.TransportSecurity
            if let certificate = configuration.tlsCertificate, let key = configuration.tlsKey {
                let chain: [TLSConfig.CertificateSource] = [.file(path: certificate, format: .pem)]
                let privateKey = TLSConfig.PrivateKeySource.file(path: key, format: .pem)
                if let clientCA = configuration.clientCA {
                    security = .mTLS(certificateChain: chain, privateKey: privateKey) { config in
                        config.trustRoots = .certificates([.file(path: clientCA, format: .pem)])
                        config.clientCertificateVerification = .noHostnameVerification
                    }
                } else {
                    security = .tls(certificateChain: chain, privateKey: privateKey)
                }
            } else {
                security = .plaintext
            }
            let address: GRPCNIOTransportCore.SocketAddress = host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
            let server = GRPCServer(transport: .http2NIOPosix(address: address, transportSecurity: security, config: transportConfig),
                                    services: services, interceptors: interceptors)
            run(server)
            if let listening = try await server.listeningAddress, let ip = listening.ipv4 ?? listening.ipv6.map({ .init(host: $0.host, port: $0.port) }) {
                boundPort = ip.port
            }
            logger.info("gRPC API listening", metadata: ["grpc.address": "\(host):\(boundPort ?? port)", "grpc.tls": "\(configuration.tlsCertificate != nil)",
                                                         "grpc.token_required": "\(configuration.token != nil)"])
        }
        if let path = configuration.socketPath {
            // A stale socket of an earlier run would make bind fail.
            unlink(path)
            let server = GRPCServer(transport: .http2NIOPosix(address: .unixDomainSocket(path: path), transportSecurity: .plaintext, config: transportConfig),
                                    services: services, interceptors: interceptors)
            run(server)
            _ = try await server.listeningAddress
            chmod(path, 0o600)
            logger.info("gRPC API listening", metadata: ["grpc.socket": "\(path)"])
        }
        return boundPort
    }

    private func run(_ server: GRPCServer<HTTP2ServerTransport.Posix>) {
        servers.withLock { $0.append(server) }
        let logger = self.logger
        let task = Task {
            do {
                try await server.serve()
            } catch {
                logger.error("gRPC server stopped", metadata: ["error": "\(error)"])
                throw error
            }
        }
        tasks.withLock { $0.append(task) }
    }

    /// Stops accepting calls and waits for in-flight calls to finish.
    public func stop() async {
        for server in servers.withLock({ $0 }) { server.beginGracefulShutdown() }
        for task in tasks.withLock({ $0 }) { _ = await task.result }
        if let path = configuration.socketPath { unlink(path) }
    }
}
