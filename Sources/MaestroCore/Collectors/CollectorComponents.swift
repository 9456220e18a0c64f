internal import MaestroValue
internal import MaestroYAML
internal import Foundation

/// A component list that cannot be used: the file and what is wrong with it.
public struct CollectorComponentsError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The component types one collector image holds (`plugins/_components/<distribution>-<version>.yaml`):
/// the images it describes and, per kind, the types a config may name.
public struct CollectorComponents: Sendable, Equatable {
    public enum Kind: String, CaseIterable, Sendable {
        case receivers, processors, exporters, extensions, connectors

        /// One component of the kind, as messages say it.
        public var singular: String { String(rawValue.dropLast()) }

        /// `a receiver`, `an exporter`.
        public var withArticle: String { (["exporters", "extensions"].contains(rawValue) ? "an " : "a ") + singular }
    }

    /// The images (`repository:tag`) this list describes.
    public let images: [String]
    /// Where the list was read from, for messages.
    public let file: String
    public let types: [Kind: Set<String>]

    public init(images: [String], file: String, types: [Kind: Set<String>]) {
        self.images = images
        self.file = file
        self.types = types
    }

    /// Reads a list: `images: [...]` and one list of type names per kind, all five present.
    public init(yaml: String, file: String) throws(CollectorComponentsError) {
        let document: Value
        do {
            document = try YAML.parse(yaml)
        } catch {
            throw CollectorComponentsError("\(file): \(error)")
        }
        guard case .map(let entries) = document else { throw CollectorComponentsError("\(file): must be a map") }
        let known = Set(Kind.allCases.map(\.rawValue) + ["images"])
        if let unknown = entries.keys.sorted().first(where: { !known.contains($0) }) {
            throw CollectorComponentsError("\(file): unknown key \(unknown)")
        }
        func strings(_ key: String) throws(CollectorComponentsError) -> [String] {
            guard case .list(let items)? = entries[key] else { throw CollectorComponentsError("\(file): \(key) must be a list") }
            var names: [String] = []
            for item in items {
                guard let name = item.stringValue, !name.isEmpty else { throw CollectorComponentsError("\(file): \(key) must hold names") }
                names.append(name)
            }
            return names
        }
        let images = try strings("images")
        guard !images.isEmpty else { throw CollectorComponentsError("\(file): images must name at least one image") }
        var types: [Kind: Set<String>] = [:]
        for kind in Kind.allCases {
            types[kind] = Set(try strings(kind.rawValue))
        }
        self.init(images: images, file: file, types: types)
    }

    public func has(_ type: String, of kind: Kind) -> Bool {
        types[kind]?.contains(type) ?? false
    }
}

/// Every component list of a plugins folder (`plugins/_components/*.yaml`), by image.
public struct CollectorComponentLists: Sendable, Equatable {
    public let lists: [CollectorComponents]

    public init(_ lists: [CollectorComponents] = []) {
        self.lists = lists
    }

    /// Whether collector configs are checked: a plugins folder that ships component lists asks for it;
    /// one without `_components/` (a folder of an operator's own making) does not.
    public var checksConfigs: Bool { !lists.isEmpty }

    /// The folder the lists live in, under a plugins folder.
    public static func folder(inPlugins root: String) -> String { root + "/_components" }

    /// Reads every `*.yaml` of `folder` (none when it does not exist). A broken file, or two files
    /// claiming one image, is an error: a wrong list would refuse good configs or pass bad ones.
    public static func load(folder: String) throws(CollectorComponentsError) -> CollectorComponentLists {
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".yaml") }.sorted()
        var lists: [CollectorComponents] = []
        for name in files {
            let path = folder + "/" + name
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw CollectorComponentsError("\(path): cannot be read")
            }
            let list = try CollectorComponents(yaml: text, file: "_components/" + name)
            for image in list.images {
                if let other = lists.first(where: { $0.images.contains(image) }) {
                    throw CollectorComponentsError("\(list.file): image \(image) is described by \(other.file) already")
                }
            }
            lists.append(list)
        }
        return CollectorComponentLists(lists)
    }

    /// The list of `image`; nil when no file describes it (its types cannot be checked).
    public func components(forImage image: String) -> CollectorComponents? {
        lists.first { $0.images.contains(image) }
    }
}
