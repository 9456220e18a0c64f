internal import MaestroValue
internal import MaestroYAML

/// Why a stored desired state cannot be applied.
public struct DesiredStateError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { message }
}

extension DesiredCollector {
    /// The one decoder of a stored desired state (`orb.maestro.otelCollector`): the multi-document YAML
    /// of the collector's objects, named by its first object (namespace `default` when it names none).
    public init(sinkID: String, desiredStateYAML yaml: String) throws(DesiredStateError) {
        let objects: [Value]
        do {
            objects = try YAML.parseAll(yaml)
        } catch {
            throw DesiredStateError(message: "the stored desired state is not valid YAML: \(error)")
        }
        guard let first = objects.first, let name = first["metadata"]?["name"]?.stringValue else {
            throw DesiredStateError(message: "the stored desired state has no objects")
        }
        self.init(sinkID: sinkID, name: name, namespace: first["metadata"]?["namespace"]?.stringValue ?? "default", objects: objects)
    }
}
