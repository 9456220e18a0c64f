public import MaestroValue
internal import MaestroYAML

/// The collector's own structural rules for its config, checked before a config is stored (sinker) or
/// applied (maestro role), so that a config the collector would refuse at start never replaces one
/// that runs: every pipeline has a receiver and an exporter; every component a pipeline or
/// `service.extensions` names is defined (`type[/name]`), connectors joining two pipelines; every
/// component type exists in the image (when its list is known). Bounded work: one pass over the config.
public enum CollectorConfigRules {
    /// The signals a pipeline id may start with.
    static let signals: Set<String> = ["traces", "metrics", "logs"]

    /// The first rule `config` breaks, as a `provisioning_error` message naming the component and the
    /// pipeline; nil when it keeps them all. `components`: the image's list; nil checks no types.
    public static func violation(in config: Value, components: CollectorComponents?) -> String? {
        do {
            try check(config, components: components)
            return nil
        } catch {
            return "collector config: " + error.message
        }
    }

    /// The same for a stored config (YAML); a config that does not parse breaks the first rule.
    public static func violation(inYAML yaml: String, components: CollectorComponents?) -> String? {
        let config: Value
        do {
            config = try YAML.parse(yaml)
        } catch {
            return "collector config: not valid YAML: \(error)"
        }
        return violation(in: config, components: components)
    }

    struct Violation: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    typealias Kind = CollectorComponents.Kind

    private static func check(_ config: Value, components: CollectorComponents?) throws(Violation) {
        guard case .map(let sections) = config else { throw Violation("must be a map, not \(article(config))") }
        var defined: [Kind: [String: ComponentID]] = [:]
        for kind in Kind.allCases {
            defined[kind] = try definitions(sections[kind.rawValue], kind: kind)
        }
        for id in (defined[.connectors] ?? [:]).keys.sorted() {
            for kind in [Kind.receivers, .exporters] where defined[kind]?[id] != nil {
                throw Violation("connector \(quoted(id)) has the id of \(kind.withArticle) (connectors and \(kind.rawValue) must not share ids)")
            }
        }
        guard let serviceValue = sections["service"], !serviceValue.isNull else { throw Violation("service is missing") }
        guard case .map(let service) = serviceValue else { throw Violation("service must be a map, not \(article(serviceValue))") }

        // Where each component is first used, so a type message names the pipeline.
        var usedIn: [Kind: [String: String]] = [:]
        let extensions = try references(service["extensions"], at: "service.extensions")
        for id in extensions {
            guard defined[.extensions]?[id] != nil else {
                throw Violation("service.extensions: extension \(quoted(id)) is not defined in extensions")
            }
            usedIn[.extensions, default: [:]][id] = usedIn[.extensions]?[id] ?? "service.extensions"
        }

        guard let pipelinesValue = service["pipelines"], case .map(let pipelines) = pipelinesValue else {
            throw Violation("service.pipelines must be a map of pipelines (signal[/name])")
        }
        guard !pipelines.isEmpty else { throw Violation("service.pipelines must hold at least one pipeline") }
        var connectorsAsExporter: [String: String] = [:]
        var connectorsAsReceiver: [String: String] = [:]
        for name in pipelines.keys.sorted() {
            let id = try ComponentID(parsing: name, at: "service.pipelines")
            guard signals.contains(id.type) else {
                throw Violation("pipeline \(quoted(name)): the signal must be traces, metrics or logs, not \(quoted(id.type))")
            }
            let pipeline = "pipeline \(quoted(name))"
            guard case .map(let parts) = pipelines[name]! else {
                throw Violation("\(pipeline) must be a map of receivers, processors and exporters, not \(article(pipelines[name]!))")
            }
            let receivers = try references(parts["receivers"], at: "\(pipeline): receivers")
            let processors = try references(parts["processors"], at: "\(pipeline): processors", refusingDuplicates: true)
            let exporters = try references(parts["exporters"], at: "\(pipeline): exporters")
            guard !receivers.isEmpty else { throw Violation("\(pipeline) has no receiver (it needs at least one)") }
            guard !exporters.isEmpty else { throw Violation("\(pipeline) has no exporter (it needs at least one)") }
            for receiver in receivers {
                if defined[.receivers]?[receiver] != nil {
                    usedIn[.receivers, default: [:]][receiver] = usedIn[.receivers]?[receiver] ?? pipeline
                } else if defined[.connectors]?[receiver] != nil {
                    connectorsAsReceiver[receiver] = connectorsAsReceiver[receiver] ?? pipeline
                    usedIn[.connectors, default: [:]][receiver] = usedIn[.connectors]?[receiver] ?? pipeline
                } else {
                    throw Violation("\(pipeline): receiver \(quoted(receiver)) is not defined in receivers or connectors")
                }
            }
            for processor in processors {
                guard defined[.processors]?[processor] != nil else {
                    throw Violation("\(pipeline): processor \(quoted(processor)) is not defined in processors")
                }
                usedIn[.processors, default: [:]][processor] = usedIn[.processors]?[processor] ?? pipeline
            }
            for exporter in exporters {
                if defined[.exporters]?[exporter] != nil {
                    usedIn[.exporters, default: [:]][exporter] = usedIn[.exporters]?[exporter] ?? pipeline
                } else if defined[.connectors]?[exporter] != nil {
                    connectorsAsExporter[exporter] = connectorsAsExporter[exporter] ?? pipeline
                    usedIn[.connectors, default: [:]][exporter] = usedIn[.connectors]?[exporter] ?? pipeline
                } else {
                    throw Violation("\(pipeline): exporter \(quoted(exporter)) is not defined in exporters or connectors")
                }
            }
        }
        // A connector joins two pipelines: the end of one and the start of another.
        for (connector, pipeline) in connectorsAsExporter.sorted(by: { $0.key < $1.key }) where connectorsAsReceiver[connector] == nil {
            throw Violation("\(pipeline): connector \(quoted(connector)) is used as an exporter but no pipeline uses it as a receiver")
        }
        for (connector, pipeline) in connectorsAsReceiver.sorted(by: { $0.key < $1.key }) where connectorsAsExporter[connector] == nil {
            throw Violation("\(pipeline): connector \(quoted(connector)) is used as a receiver but no pipeline uses it as an exporter")
        }

        guard let components else { return }
        // The collector refuses an unknown type in any section, used or not.
        for kind in Kind.allCases {
            for (text, id) in (defined[kind] ?? [:]).sorted(by: { $0.key < $1.key }) where !components.has(id.type, of: kind) {
                let place = usedIn[kind]?[text].map { "\($0): " } ?? "\(kind.rawValue): "
                throw Violation("\(place)\(kind.singular) \(quoted(text)): type \(quoted(id.type)) is not \(kind.withArticle) of the image "
                                + "\(components.images[0]) (\(components.file))")
            }
        }
    }

    /// The components of one section by id; an absent or null section defines none.
    private static func definitions(_ section: Value?, kind: Kind) throws(Violation) -> [String: ComponentID] {
        guard let section, !section.isNull else { return [:] }
        guard case .map(let entries) = section else {
            throw Violation("\(kind.rawValue) must be a map of components (type[/name]), not \(article(section))")
        }
        var ids: [String: ComponentID] = [:]
        for key in entries.keys {
            ids[key] = try ComponentID(parsing: key, at: kind.rawValue)
        }
        return ids
    }

    /// A list of component ids (absent or null: none). The collector refuses a processor named twice in
    /// a pipeline (it would run twice); other lists may repeat an id.
    private static func references(_ value: Value?, at place: String, refusingDuplicates: Bool = false) throws(Violation) -> [String] {
        guard let value, !value.isNull else { return [] }
        guard case .list(let items) = value else { throw Violation("\(place) must be a list of component ids, not \(article(value))") }
        var seen: Set<String> = []
        var ids: [String] = []
        for item in items {
            guard let text = item.stringValue else { throw Violation("\(place) must hold component ids, not \(article(item))") }
            _ = try ComponentID(parsing: text, at: place)
            guard seen.insert(text).inserted || !refusingDuplicates else { throw Violation("\(place) names \(quoted(text)) twice") }
            ids.append(text)
        }
        return ids
    }

    /// `a list`, `an integer`.
    static func article(_ value: Value) -> String {
        (value.kindName.first.map { "aeiou".contains($0) } == true ? "an " : "a ") + value.kindName
    }

    /// An id as a message shows it: quoted, control characters replaced, long ones cut.
    static func quoted(_ text: String) -> String {
        "\"" + SinkEvent.sanitizedName(text) + "\""
    }
}

/// `type[/name]`: a type of letters, digits and `_` starting with a letter (at most 63 characters, as
/// the collector has it), and, after a `/`, a name that is not empty.
struct ComponentID {
    let type: String
    let name: String?

    init(parsing text: String, at place: String) throws(CollectorConfigRules.Violation) {
        let quoted = CollectorConfigRules.quoted(text)
        let type: Substring
        if let slash = text.firstIndex(of: "/") {
            type = text[..<slash]
            let name = text[text.index(after: slash)...]
            guard !name.isEmpty else { throw CollectorConfigRules.Violation("\(place): \(quoted) is not a component id: the name after \"/\" is empty") }
            self.name = String(name)
        } else {
            type = Substring(text)
            name = nil
        }
        guard !type.isEmpty else { throw CollectorConfigRules.Violation("\(place): \(quoted) is not a component id: the type is empty") }
        guard type.utf8.count <= 63, let first = type.unicodeScalars.first, Self.isLetter(first),
              type.unicodeScalars.allSatisfy({ Self.isLetter($0) || ("0"..."9").contains($0) || $0 == "_" }) else {
            throw CollectorConfigRules.Violation("\(place): \(quoted) is not a component id: the type must be a letter followed by at most 62 "
                                                 + "letters, digits or _")
        }
        self.type = String(type)
    }

    private static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
    }
}
