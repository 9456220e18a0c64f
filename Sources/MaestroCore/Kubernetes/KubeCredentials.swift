internal import Foundation
public import MaestroHTTP
internal import MaestroValue
internal import MaestroYAML
internal import Synchronization

/// How to reach and authenticate to a Kubernetes API server, from a kubeconfig or the in-cluster
/// service account.
public struct KubeCredentials: Sendable {
    public var server: String
    public var tls: TLSOptions
    public var token: KubeTokenSource
    /// The context's namespace (kubeconfig) or the pod's (in cluster), if any.
    public var namespace: String?
    /// Where these came from, for logs (never a secret).
    public var origin: String

    public init(server: String, tls: TLSOptions = TLSOptions(), token: KubeTokenSource = .none, namespace: String? = nil, origin: String) {
        self.server = server
        self.tls = tls
        self.token = token
        self.namespace = namespace
        self.origin = origin
    }
}

/// Where the bearer token comes from. Files are re-read (bound service-account tokens rotate); exec
/// plugins are run again when their credential expires.
public final class KubeTokenSource: Sendable {
    enum Source {
        case none
        case fixed(String)
        case file(String)
        case exec(ExecPlugin)
    }

    struct ExecPlugin: Sendable {
        var command: String
        var arguments: [String]
        var environment: [String: String]
        var apiVersion: String
        var directory: String
    }

    let source: Source
    private let cached = Mutex<(token: String?, certificate: [UInt8]?, key: [UInt8]?, expires: Date?)>((nil, nil, nil, nil))

    init(_ source: Source) { self.source = source }

    public static let none = KubeTokenSource(.none)
    public static func fixed(_ token: String) -> KubeTokenSource { KubeTokenSource(.fixed(token)) }
    public static func file(_ path: String) -> KubeTokenSource { KubeTokenSource(.file(path)) }

    /// The current token, if any.
    public func token() throws(KubeConfigError) -> String? {
        switch source {
        case .none: return nil
        case .fixed(let token): return token
        case .file(let path):
            guard let text = TextFile.read(path) else { throw KubeConfigError("cannot read the token file \(path)") }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        case .exec(let plugin):
            return try credential(plugin).token
        }
    }

    /// A client certificate and key an exec plugin returned, if any.
    public func clientCertificate() throws(KubeConfigError) -> (certificate: [UInt8], key: [UInt8])? {
        guard case .exec(let plugin) = source else { return nil }
        let credential = try credential(plugin)
        guard let certificate = credential.certificate, let key = credential.key else { return nil }
        return (certificate, key)
    }

    /// Forgets a cached exec credential (after a 401), so the next request runs the plugin again.
    public func invalidate() {
        cached.withLock { $0 = (nil, nil, nil, nil) }
    }

    private func credential(_ plugin: ExecPlugin) throws(KubeConfigError) -> (token: String?, certificate: [UInt8]?, key: [UInt8]?) {
        let current = cached.withLock { $0 }
        if current.token != nil || current.certificate != nil, current.expires.map({ $0.timeIntervalSinceNow > 30 }) ?? true {
            return (current.token, current.certificate, current.key)
        }
        let fresh = try Self.run(plugin)
        cached.withLock { $0 = fresh }
        return (fresh.token, fresh.certificate, fresh.key)
    }

    /// Runs the plugin as kubectl does: ExecCredential in KUBERNETES_EXEC_INFO, JSON on stdout.
    static func run(_ plugin: ExecPlugin) throws(KubeConfigError) -> (token: String?, certificate: [UInt8]?, key: [UInt8]?, expires: Date?) {
        let info = #"{"apiVersion":"\#(plugin.apiVersion)","kind":"ExecCredential","spec":{"interactive":false}}"#
        var environment = ProcessInfo.processInfo.environment
        environment["KUBERNETES_EXEC_INFO"] = info
        environment.merge(plugin.environment) { _, new in new }
        let command = plugin.command.contains("/") ? (plugin.command.hasPrefix("/") ? plugin.command : plugin.directory + "/" + plugin.command)
            : ((try? executable(plugin.command)) ?? plugin.command)
        let output = NSTemporaryDirectory() + "maestro-exec-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: output) }
        let child: ChildProcess
        do {
            child = try ChildProcess([command] + plugin.arguments, environment: environment, logPath: output, separateStandardError: true)
        } catch {
            throw KubeConfigError("cannot run the credential plugin \(plugin.command): \(error)")
        }
        guard child.wait(timeout: 60) else {
            child.signal(SIGKILL)
            throw KubeConfigError("the credential plugin \(plugin.command) did not finish within 60 s")
        }
        guard child.exitCode == 0 else { throw KubeConfigError("the credential plugin \(plugin.command) exited with \(child.exitCode ?? -1)") }
        guard let text = TextFile.read(output), let credential = try? JSON.decode(text), let status = credential["status"] else {
            throw KubeConfigError("the credential plugin \(plugin.command) did not print an ExecCredential")
        }
        let token = status["token"]?.stringValue
        let certificate = status["clientCertificateData"]?.stringValue.map { Array($0.utf8) }
        let key = status["clientKeyData"]?.stringValue.map { Array($0.utf8) }
        guard token != nil || (certificate != nil && key != nil) else {
            throw KubeConfigError("the credential plugin \(plugin.command) returned neither a token nor a client certificate")
        }
        let expires = status["expirationTimestamp"]?.stringValue.flatMap { try? Date($0, strategy: .iso8601) }
        return (token, certificate, key, expires)
    }
}

public struct KubeConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Finds the credentials as kubectl would: `--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`;
/// or, inside a pod, the service account.
public enum KubeConfigLoader {
    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The kubeconfig to use, or nil when there is none (then in-cluster, else no cluster).
    public static func kubeconfigPath(flag: String?, environment: [String: String]) -> String? {
        if let flag, !flag.isEmpty { return flag }
        if let variable = environment["KUBECONFIG"], !variable.isEmpty {
            return variable.split(separator: ":").map(String.init).first { FileManager.default.fileExists(atPath: $0) }
        }
        if let home = environment["HOME"], FileManager.default.fileExists(atPath: home + "/.kube/config") { return home + "/.kube/config" }
        return nil
    }

    /// Whether a cluster is configured at all (for the default backend choice).
    public static func clusterAvailable(flag: String?, environment: [String: String], serviceAccount: String = serviceAccountDirectory) -> Bool {
        kubeconfigPath(flag: flag, environment: environment) != nil
            || (environment["KUBERNETES_SERVICE_HOST"] != nil && FileManager.default.fileExists(atPath: serviceAccount + "/token"))
    }

    public static func load(flag: String?, environment: [String: String], serviceAccount: String = serviceAccountDirectory) throws(KubeConfigError) -> KubeCredentials {
        if let path = kubeconfigPath(flag: flag, environment: environment) { return try load(kubeconfig: path) }
        return try inCluster(environment: environment, directory: serviceAccount)
    }

    public static func inCluster(environment: [String: String], directory: String = serviceAccountDirectory) throws(KubeConfigError) -> KubeCredentials {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], let port = environment["KUBERNETES_SERVICE_PORT"] else {
            throw KubeConfigError("no kubeconfig found and not running in a cluster (KUBERNETES_SERVICE_HOST is not set)")
        }
        guard FileManager.default.fileExists(atPath: directory + "/token") else {
            throw KubeConfigError("in-cluster: the service account token \(directory)/token is missing")
        }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let namespace = TextFile.read(directory + "/namespace")?.trimmingCharacters(in: .whitespacesAndNewlines)
        let ca: PEMSource? = FileManager.default.fileExists(atPath: directory + "/ca.crt") ? .file(directory + "/ca.crt") : nil
        return KubeCredentials(server: "https://\(hostPart):\(port)", tls: TLSOptions(certificateAuthority: ca), token: .file(directory + "/token"),
                               namespace: namespace, origin: "in-cluster service account")
    }

    public static func load(kubeconfig path: String) throws(KubeConfigError) -> KubeCredentials {
        guard let text = TextFile.read(path) else { throw KubeConfigError("cannot read the kubeconfig \(path)") }
        return try parse(text, path: path)
    }

    /// Parses a kubeconfig's current context. Relative file paths are relative to the kubeconfig's folder.
    public static func parse(_ text: String, path: String) throws(KubeConfigError) -> KubeCredentials {
        let document: Value
        do {
            document = try YAML.parse(text)
        } catch {
            throw KubeConfigError("kubeconfig \(path): \(error)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        func resolve(_ file: String) -> String { file.hasPrefix("/") ? file : directory + "/" + file }
        func named(_ list: String, _ name: String, _ field: String) throws(KubeConfigError) -> Value {
            guard let entry = document[list]?.listValue?.first(where: { $0["name"]?.stringValue == name }), let value = entry[field] else {
                throw KubeConfigError("kubeconfig \(path): no \(field) named \"\(name)\" in \(list)")
            }
            return value
        }
        guard let current = document["current-context"]?.stringValue, !current.isEmpty else {
            throw KubeConfigError("kubeconfig \(path): current-context is not set")
        }
        let context = try named("contexts", current, "context")
        guard let clusterName = context["cluster"]?.stringValue else { throw KubeConfigError("kubeconfig \(path): context \(current) has no cluster") }
        let cluster = try named("clusters", clusterName, "cluster")
        guard let server = cluster["server"]?.stringValue, !server.isEmpty else {
            throw KubeConfigError("kubeconfig \(path): cluster \(clusterName) has no server")
        }
        var tls = TLSOptions(insecure: cluster["insecure-skip-tls-verify"]?.boolValue ?? false)
        if let data = cluster["certificate-authority-data"]?.stringValue {
            tls.certificateAuthority = .pem(try decodeBase64(data, field: "certificate-authority-data", path: path))
        } else if let file = cluster["certificate-authority"]?.stringValue {
            tls.certificateAuthority = .file(resolve(file))
        }
        var token = KubeTokenSource.none
        if let userName = context["user"]?.stringValue {
            let user = try named("users", userName, "user")
            if let data = user["client-certificate-data"]?.stringValue {
                tls.clientCertificate = .pem(try decodeBase64(data, field: "client-certificate-data", path: path))
            } else if let file = user["client-certificate"]?.stringValue {
                tls.clientCertificate = .file(resolve(file))
            }
            if let data = user["client-key-data"]?.stringValue {
                tls.clientKey = .pem(try decodeBase64(data, field: "client-key-data", path: path))
            } else if let file = user["client-key"]?.stringValue {
                tls.clientKey = .file(resolve(file))
            }
            if let value = user["token"]?.stringValue {
                token = .fixed(value)
            } else if let file = user["tokenFile"]?.stringValue {
                token = .file(resolve(file))
            } else if let exec = user["exec"] {
                guard let command = exec["command"]?.stringValue else { throw KubeConfigError("kubeconfig \(path): exec needs a command") }
                var environment: [String: String] = [:]
                for entry in exec["env"]?.listValue ?? [] {
                    if let name = entry["name"]?.stringValue, let value = entry["value"]?.stringValue { environment[name] = value }
                }
                token = KubeTokenSource(.exec(.init(command: command, arguments: (exec["args"]?.listValue ?? []).compactMap(\.stringValue),
                                                    environment: environment,
                                                    apiVersion: exec["apiVersion"]?.stringValue ?? "client.authentication.k8s.io/v1",
                                                    directory: directory)))
            }
        }
        return KubeCredentials(server: server, tls: tls, token: token, namespace: context["namespace"]?.stringValue,
                               origin: "kubeconfig \(path), context \(current)")
    }

    static func decodeBase64(_ text: String, field: String, path: String) throws(KubeConfigError) -> [UInt8] {
        guard let data = Data(base64Encoded: text.filter { !$0.isWhitespace }) else {
            throw KubeConfigError("kubeconfig \(path): \(field) is not valid base64")
        }
        return Array(data)
    }
}
