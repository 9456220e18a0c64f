public import GRPCCore
public import GRPCNIOTransportHTTP2
public import MaestroCore
internal import Foundation

/// How to reach a maestro's API: `HOST:PORT` or `unix:PATH`, with the token and TLS settings.
public struct APIClientConfiguration: Sendable {
    public var target: String
    public var token: String?
    /// Trust these CAs for the server's certificate (TLS); nil: plaintext.
    public var caCertificate: String?
    /// A client certificate and key (mutual TLS).
    public var clientCertificate: String?
    public var clientKey: String?
    public var timeout: Duration

    public init(target: String, token: String? = nil, caCertificate: String? = nil, clientCertificate: String? = nil, clientKey: String? = nil,
                timeout: Duration = .seconds(15)) {
        self.target = target
        self.token = token
        self.caCertificate = caCertificate
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.timeout = timeout
    }

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    func transport() throws -> HTTP2ClientTransport.Posix {
        let resolvable: any ResolvableTarget
        if target.hasPrefix("unix:") {
            resolvable = .unixDomainSocket(path: String(target.dropFirst("unix:".count)))
        } else {
            guard let colon = target.lastIndex(of: ":"), let port = Int(target[target.index(after: colon)...]) else {
                throw Invalid(description: "a target is HOST:PORT or unix:PATH, got \"\(target)\"")
            }
            var host = String(target[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            resolvable = host.contains(":") ? .ipv6(address: host, port: port) : (host.first?.isNumber == true ? .ipv4(address: host, port: port) : .dns(host: host, port: port))
        }
        let security: HTTP2ClientTransport.Posix.TransportSecurity
        if let ca = caCertificate {
            if let certificate = clientCertificate, let key = clientKey {
                security = .mTLS(certificateChain: [.file(path: certificate, format: .pem)], privateKey: .file(path: key, format: .pem)) { config in
                    config.trustRoots = .certificates([.file(path: ca, format: .pem)])
                }
            } else {
                security = .tls { config in config.trustRoots = .certificates([.file(path: ca, format: .pem)]) }
            }
        } else {
            security = .plaintext
        }
        return try HTTP2ClientTransport.Posix(target: resolvable, transportSecurity: security)
    }
}

/// A client of the maestro API that runs its connections for as long as it lives.
public final class APIClient: Sendable {
    public let configuration: APIClientConfiguration
    public let collectors: Maestro_V1_OtelCollectorService.Client<HTTP2ClientTransport.Posix>
    public let health: Grpc_Health_V1_Health.Client<HTTP2ClientTransport.Posix>
    private let client: GRPCClient<HTTP2ClientTransport.Posix>
    private let connections: Task<Void, any Error>

    public init(configuration: APIClientConfiguration) throws {
        self.configuration = configuration
        let client = GRPCClient(transport: try configuration.transport())
        self.client = client
        collectors = Maestro_V1_OtelCollectorService.Client(wrapping: client)
        health = Grpc_Health_V1_Health.Client(wrapping: client)
        connections = Task { try await client.runConnections() }
    }

    deinit {
        client.beginGracefulShutdown()
    }

    public func close() async {
        client.beginGracefulShutdown()
        _ = await connections.result
    }

    /// Metadata carrying the bearer token, if any.
    public var metadata: Metadata {
        var metadata = Metadata()
        if let token = configuration.token { metadata.addString("Bearer \(token)", forKey: "authorization") }
        return metadata
    }

    public var options: CallOptions {
        var options = CallOptions.defaults
        options.timeout = configuration.timeout
        return options
    }
}

/// The sinker's hand-off when the roles run apart: the `CollectorService` calls become gRPC calls to the
/// maestro role. Called from worker threads (never the cooperative pool), it blocks until the reply;
/// failures come back as `CollectorServiceError`s, and the sink pipeline retries the entry.
public final class RemoteCollectorService: CollectorService {
    let client: APIClient

    public init(configuration: APIClientConfiguration) throws {
        client = try APIClient(configuration: configuration)
    }

    public func create(sinkID: String, ownerID: String) throws(CollectorServiceError) {
        // The hand-off's trace goes with the call (read here: the call runs in a task of its own).
        let metadata = client.metadata.withCurrentTrace()
        try blocking { [client] in
            _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = sinkID; $0.ownerID = ownerID }, metadata: metadata,
                                                                options: client.options)
        }
    }

    public func update(sinkID: String, ownerID: String) throws(CollectorServiceError) {
        let metadata = client.metadata.withCurrentTrace()
        try blocking { [client] in
            _ = try await client.collectors.updateOtelCollector(.with { $0.sinkID = sinkID; $0.ownerID = ownerID }, metadata: metadata,
                                                                options: client.options)
        }
    }

    public func remove(sinkID: String) throws(CollectorServiceError) {
        let metadata = client.metadata.withCurrentTrace()
        try blocking { [client] in
            _ = try await client.collectors.deleteOtelCollector(.with { $0.sinkID = sinkID }, metadata: metadata, options: client.options)
        }
    }

    /// The call, on the calling worker thread (`awaitBlocking`), its RPC error mapped to the service's.
    private func blocking(_ operation: @escaping @Sendable () async throws -> Void) throws(CollectorServiceError) {
        let rpc: RPCError
        do {
            try awaitBlocking(operation)
            return
        } catch let error as RPCError {
            rpc = error
        } catch {
            throw CollectorServiceError(.unavailable, "the maestro API: \(error)")
        }
        switch rpc.code {
        case .notFound: throw CollectorServiceError(.notFound, rpc.message)
        case .invalidArgument: throw CollectorServiceError(.invalidArgument, rpc.message)
        case .failedPrecondition: throw CollectorServiceError(.failedPrecondition, rpc.message)
        default: throw CollectorServiceError(.unavailable, "the maestro API: \(rpc.code): \(rpc.message)")
        }
    }
}
