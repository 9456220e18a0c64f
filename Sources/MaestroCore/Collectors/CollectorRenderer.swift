public import MaestroValue

/// Turns a collector's inputs into its Kubernetes objects: the seam PluginHost fills with the Lua
/// template. A renderer is used by one thread at a time; `CollectorManager` pools them.
public protocol CollectorRenderer: AnyObject {
    func render(_ inputs: CollectorInputs) throws -> RenderedCollector
}

/// What a collector's objects are rendered from: the host's inputs, then the template's values.
public struct CollectorInputs: Sendable, Equatable {
    public var sinkID: String
    public var ownerID: String
    public var configYAML: String
    public var configHash: String

    public init(sinkID: String, ownerID: String, configYAML: String, configHash: String) {
        self.sinkID = sinkID
        self.ownerID = ownerID
        self.configYAML = configYAML
        self.configHash = configHash
    }

    public var collectorName: String { CollectorNaming.name(forSinkID: sinkID) }
}

/// The rendered objects of one collector, and their multi-document YAML (the desired state).
public struct RenderedCollector: Sendable, Equatable {
    public var name: String
    /// The owner the objects were rendered for (the sink pipeline's record when the caller gave none).
    public var ownerID: String = ""
    public var namespace: String
    public var objects: [Value]
    public var yaml: String

    public init(name: String, ownerID: String = "", namespace: String, objects: [Value], yaml: String) {
        self.name = name
        self.ownerID = ownerID
        self.namespace = namespace
        self.objects = objects
        self.yaml = yaml
    }
}
