public import MaestroValue
internal import MaestroYAML
internal import Foundation
#if canImport(Glibc)
internal import Glibc
#endif

/// Writes each collector to `<root>/<namespace>/<collector name>.yaml` (mode 0600: the Secret holds
/// credentials), atomically (a temporary file renamed over the old one), for GitOps tools or a first
/// try on a laptop. It cannot see pods, so it never claims more than `provisioning`.
public struct DirectoryBackend: ClusterBackend {
    public let root: String
    public var name: String { "directory" }

    public init(root: String) {
        self.root = root
    }

    public func path(name: String, namespace: String) -> String {
        "\(root)/\(namespace)/\(name).yaml"
    }

    public func apply(_ collector: DesiredCollector, previous: AppliedState?) throws(ClusterError) -> ApplyResult {
        let applied = AppliedState(desiredDigest: collector.digest)
        let written = try writeFile(collector)
        guard written else { return ApplyResult(outcome: .unchanged, applied: applied) }
        if let previous, previous.desiredDigest == applied.desiredDigest {
            return ApplyResult(outcome: .drifted(paths: [path(name: collector.name, namespace: collector.namespace)]), applied: applied)
        }
        return ApplyResult(outcome: previous == nil ? .unknown : .changed, applied: applied)
    }

    /// Writes the file unless it already holds the objects; true when written.
    private func writeFile(_ collector: DesiredCollector) throws(ClusterError) -> Bool {
        guard CollectorNaming.isDNS1035Label(collector.name), Self.isSafeSegment(collector.namespace) else {
            throw ClusterError(.rejected, "invalid collector name or namespace")
        }
        let text: String
        do {
            text = try YAML.emitAll(collector.objects)
        } catch {
            throw ClusterError(.rejected, "cannot write the objects as YAML: \(error)")
        }
        let folder = "\(root)/\(collector.namespace)"
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw ClusterError(.failed, "cannot create \(folder): \(error.localizedDescription)")
        }
        let target = path(name: collector.name, namespace: collector.namespace)
        if let current = FileManager.default.contents(atPath: target), current.elementsEqual(text.utf8) { return false }
        let temporary = "\(folder)/.\(collector.name).yaml.\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw ClusterError(.failed, "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, bytes.count - written) }
            if result < 0 {
                if errno == EINTR { continue }
                close(descriptor)
                unlink(temporary)
                throw ClusterError(.failed, "cannot write \(temporary): \(String(cString: strerror(errno)))")
            }
            written += result
        }
        fsync(descriptor)
        close(descriptor)
        guard rename(temporary, target) == 0 else {
            unlink(temporary)
            throw ClusterError(.failed, "cannot rename into \(target): \(String(cString: strerror(errno)))")
        }
        return true
    }

    public func delete(sinkID: String, name: String, namespace: String) throws(ClusterError) {
        guard Self.isSafeSegment(name), Self.isSafeSegment(namespace) else { return }
        let target = path(name: name, namespace: namespace)
        if unlink(target) != 0 && errno != ENOENT {
            throw ClusterError(.failed, "cannot delete \(target): \(String(cString: strerror(errno)))")
        }
    }

    public func observe(_ collector: DesiredCollector) throws(ClusterError) -> (status: SinkStatus, message: String) {
        (.provisioning, "")
    }

    public func managedCollectors() throws(ClusterError) -> [ManagedCollector] {
        var found: [ManagedCollector] = []
        let namespaces = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        for namespace in namespaces where Self.isSafeSegment(namespace) {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/\(namespace)")) ?? []
            for file in files where file.hasSuffix(".yaml") && !file.hasPrefix(".") {
                let full = "\(root)/\(namespace)/\(file)"
                guard let text = TextFile.read(full), let objects = try? YAML.parseAll(text),
                      let first = objects.first(where: { $0["metadata"]?["labels"]?["app.kubernetes.io/managed-by"] == .string("maestro") }),
                      let sinkID = first["metadata"]?["annotations"]?["maestro.orb.community/sink-id"]?.stringValue else { continue }
                let modified = (try? FileManager.default.attributesOfItem(atPath: full)[.modificationDate] as? Date)?.timeIntervalSince1970
                found.append(ManagedCollector(sinkID: sinkID, name: String(file.dropLast(5)), namespace: namespace, createdAt: modified))
            }
        }
        return found
    }

    public func live(_ collector: DesiredCollector) throws(ClusterError) -> [Value] {
        guard let text = TextFile.read(path(name: collector.name, namespace: collector.namespace)) else { return [] }
        return (try? YAML.parseAll(text)) ?? []
    }

    static func isSafeSegment(_ text: String) -> Bool {
        !text.isEmpty && text != "." && text != ".." && !text.contains("/") && !text.contains("\0")
    }
}
