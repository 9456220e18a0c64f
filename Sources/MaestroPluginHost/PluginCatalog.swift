public import Logging
public import MaestroCore
public import MaestroLua
public import MaestroValue
internal import Foundation

/// A plugin as its `schema.lua` describes it.
public struct PluginManifest: Sendable {
    public let name: String
    public let version: String
    public let description: String
    public let folder: String
    /// The sink backend it serves (`binds = { sink_backend = "prometheus" }`), if any.
    public let sinkBackend: String?
    /// Other bindings (`binds = { collector_status = true }`), by name.
    public let bindings: [String]
    /// Rules for a sink's config (`sink = { fields = … }`).
    public let sinkSchema: ConfigSchema
    /// Rules for the plugin's own settings (`settings = { fields = … }`), from the config file's `plugins:`.
    public let settingsSchema: ConfigSchema
    /// The plugin's settings, validated, with defaults filled in.
    public let settings: Value
    /// What `schema.lua` declares (`capabilities = { ... }`) and the config file grants
    /// (`plugins: {<name>: {grants: [...]}}`).
    public let capabilities: PluginCapabilities
    /// The metrics it declares (`metrics = { name = { type, help, labels } }`), by name.
    public let metrics: [String: PluginMetricDeclaration]
    /// What the configs it builds depend on, as a digest (`fingerprint(folder:root:settings:)`): kept in
    /// each sink's record, so that a changed plugin rebuilds exactly its own sinks.
    public internal(set) var fingerprint = ""

    /// The plugin folder (its specs, golden files and Markdown left out: they build nothing), the
    /// shared `_lib/` when the plugin's Lua mentions it (a change to `_lib/` alone rebuilds only the
    /// plugins that use it), and the plugin's settings from the config file.
    static func fingerprint(folder: String, root: String, settings: Value) -> String {
        let skipped: (String) -> Bool = { path in path == "spec" || path.hasPrefix("spec/") || path.hasSuffix(".md") }
        var folders = [(label: "plugin", path: folder)]
        let files = (FileManager.default.enumerator(atPath: folder)?.compactMap { $0 as? String } ?? []).filter { $0.hasSuffix(".lua") && !skipped($0) }
        if files.contains(where: { (TextFile.read(folder + "/" + $0) ?? "").contains("_lib") }) {
            folders.append((label: "_lib", path: root + "/_lib"))
        }
        return SourceFingerprint.of(folders: folders, extra: (try? JSON.encode(settings)) ?? "", skipping: skipped)
    }
}

/// A plugin that could not be loaded, and why (with file:line where Lua knows it).
public struct PluginLoadFailure: Sendable, Equatable {
    public let folder: String
    public let message: String
}

/// The plugins of a `--plugins-dir`: every folder not starting with `_` that holds a `schema.lua`.
/// A broken plugin is reported and left out; the others load.
public struct PluginCatalog: Sendable {
    public let root: String
    public let plugins: [PluginManifest]
    public let failures: [PluginLoadFailure]
    public let limits: LuaLimits
    /// The component types of the collector images maestro knows (`_components/*.yaml`): every
    /// collector config is checked against the list of the image the template runs.
    public var components = CollectorComponentLists()

    public struct LuaLimits: Sendable {
        public var instructionBudget: Int
        public var memoryLimitBytes: Int
        public init(instructionBudget: Int = LuaConfiguration.defaultInstructionBudget, memoryLimitBytes: Int = LuaConfiguration.defaultMemoryLimitBytes) {
            self.instructionBudget = instructionBudget
            self.memoryLimitBytes = memoryLimitBytes
        }
    }

    public func plugin(forBackend backend: String) -> PluginManifest? {
        plugins.first { $0.sinkBackend == backend }
    }

    /// The catalog reduced to the plugins named (`maestro plugins lint|test NAME…`), loaded or failed;
    /// `unknown` lists the names that are neither.
    public func only(_ names: [String]) -> (catalog: PluginCatalog, unknown: [String]) {
        let wanted = Set(names)
        func folderName(_ failure: PluginLoadFailure) -> String { (failure.folder as NSString).lastPathComponent }
        var kept = PluginCatalog(root: root, plugins: plugins.filter { wanted.contains($0.name) },
                                 failures: failures.filter { wanted.contains(folderName($0)) }, limits: limits)
        kept.components = components
        let unknown = names.filter { name in !plugins.contains { $0.name == name } && !failures.contains { folderName($0) == name } }
        return (kept, unknown)
    }

    public func plugin(named name: String) -> PluginManifest? {
        plugins.first { $0.name == name }
    }

    /// Discovers and checks the plugins: schema valid, settings valid, handler loads in the sandbox.
    public static func load(root: String, settings: [String: Value] = [:], limits: LuaLimits = LuaLimits(),
                            logger: Logger = Logger(label: "maestro.plugins")) -> PluginCatalog {
        var plugins: [PluginManifest] = []
        var failures: [PluginLoadFailure] = []
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
        for name in names where !name.hasPrefix("_") && !name.hasPrefix(".") {
            let folder = root + "/" + name
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue,
                  FileManager.default.fileExists(atPath: folder + "/schema.lua") else { continue }
            do {
                var manifest = try loadOne(folder: folder, root: root, settings: settings, limits: limits, logger: logger)
                manifest.fingerprint = PluginManifest.fingerprint(folder: folder, root: root, settings: manifest.settings)
                if let backend = manifest.sinkBackend, let other = plugins.first(where: { $0.sinkBackend == backend }) {
                    throw PluginError("backend \(backend) is served by \(other.name) already")
                }
                // Two plugins' metrics must not meet on /metrics (plugin foo's bar_total and foo_bar's total;
                // plugin loki's histogram latency and loki_latency's bucket): every series name is compared.
                for metric in manifest.metrics.keys.sorted() {
                    for served in manifest.metrics[metric]!.servedNames(plugin: manifest.name) {
                        if let other = plugins.first(where: { other in other.metrics.values.contains { $0.servedNames(plugin: other.name).contains(served) } }) {
                            throw PluginError("\(relative(folder + "/schema.lua", to: root)): metric \(metric) would be served as \(served), as a metric of plugin \(other.name) is")
                        }
                    }
                }
                plugins.append(manifest)
            } catch {
                failures.append(PluginLoadFailure(folder: folder, message: "\(error)"))
                logger.error("plugin failed to load", metadata: ["plugin.folder": "\(folder)", "error": "\(error)"])
            }
        }
        for unknown in settings.keys.sorted() where !plugins.contains(where: { $0.name == unknown }) && !failures.contains(where: { $0.folder.hasSuffix("/" + unknown) }) {
            failures.append(PluginLoadFailure(folder: root + "/" + unknown, message: "settings are given for plugin \(unknown), which does not exist"))
        }
        var catalog = PluginCatalog(root: root, plugins: plugins, failures: failures, limits: limits)
        let componentsFolder = CollectorComponentLists.folder(inPlugins: root)
        do {
            catalog.components = try CollectorComponentLists.load(folder: componentsFolder)
        } catch {
            // A broken list fails the load like a broken plugin: a reload keeps the lists in use.
            catalog = PluginCatalog(root: root, plugins: plugins, failures: failures + [PluginLoadFailure(folder: componentsFolder, message: error.message)],
                                    limits: limits)
            logger.error("component list failed to load", metadata: ["plugin.folder": "\(componentsFolder)", "error": "\(error.message)"])
        }
        return catalog
    }

    static func loadOne(folder: String, root: String, settings: [String: Value], limits: LuaLimits, logger: Logger) throws -> PluginManifest {
        // The name is part of the plugin's metric names (and of the folder, which it must match).
        let folderName = (folder as NSString).lastPathComponent
        guard PluginMetricDeclaration.isPluginName(folderName) else {
            throw PluginError("plugin \(String(reflecting: folderName)): a plugin's name (its folder's) must be ASCII letters, digits, _ and -, at most 64 bytes")
        }
        let vm = try LuaVM(configuration: LuaConfiguration(name: (folder as NSString).lastPathComponent, instructionBudget: limits.instructionBudget,
                                                           memoryLimitBytes: limits.memoryLimitBytes, moduleRoots: [root], logger: logger))
        let schemaFile = folder + "/schema.lua"
        let schemaName = relative(schemaFile, to: root)
        try vm.loadModule(file: schemaFile, as: "schema", chunkName: schemaName)
        // Mistakes in the schema are named by file:line: a table keeps no lines, the source is read.
        func located(_ error: ConfigSchemaError) -> PluginError {
            PluginError("\(SchemaSourceLocator.locate(error.field, schemaFile: schemaFile, displayName: schemaName, root: root)): \(error.message)")
        }
        try vm.loadModule(source: EmbeddedLua.schema_data, chunkName: "=schema_data", as: "schema_data", applyingTo: "schema")
        if case .map(let problem) = try vm.moduleValue("schema_data", field: "problem"), let path = problem["path"]?.stringValue {
            guard !path.isEmpty else { throw PluginError("\(schemaName) must return a table") }
            throw located(ConfigSchemaError(field: path, message: "\(path) \(problem["message"]?.stringValue ?? "is not valid")"))
        }
        let schema = try vm.moduleValue("schema_data", field: "data")
        guard case .map(let topLevel) = schema else { throw PluginError("\(schemaName) must return a table") }
        do {
            try checkTopLevel(topLevel)
        } catch {
            throw located(error)
        }
        guard let name = schema["name"]?.stringValue, !name.isEmpty else { throw PluginError("\(folder)/schema.lua: name is required") }
        let expected = (folder as NSString).lastPathComponent
        guard name == expected else { throw PluginError("\(folder)/schema.lua: name \"\(name)\" must match the folder name \"\(expected)\"") }
        let binds = schema["binds"]?.mapValue ?? [:]
        let sinkSchema: ConfigSchema
        let settingsSchema: ConfigSchema
        let metrics: [String: PluginMetricDeclaration]
        do {
            sinkSchema = try ConfigSchema(fields: schema["sink"]?["fields"], path: "sink.fields", hooks: true)
            settingsSchema = try ConfigSchema(fields: schema["settings"]?["fields"], path: "settings.fields")
            metrics = try PluginMetricDeclaration.parse(schema["metrics"], plugin: name)
        } catch {
            throw located(error)
        }
        let declared: [String]
        do {
            declared = try PluginCapabilities.parse(schema["capabilities"], path: "capabilities")
        } catch {
            throw PluginError("\(SchemaSourceLocator.locate("capabilities", schemaFile: schemaFile, displayName: schemaName, root: root)): \(error.description)")
        }
        // `grants` is the operator's, not the plugin's: it never reaches the settings validation.
        var given = settings[name] ?? .map([:])
        var granted: [String] = []
        if case .map(var entries) = given {
            granted = try PluginCapabilities.parse(entries.removeValue(forKey: "grants"), path: "plugins.\(name).grants")
            given = .map(entries)
        }
        let capabilities = PluginCapabilities(declared: declared, granted: granted)
        if let undeclared = capabilities.undeclaredGrants.first {
            throw PluginError("plugins.\(name).grants: \(undeclared) is granted, but \(folder)/schema.lua does not declare it (capabilities = { ... })")
        }
        let validatedSettings: Value
        do {
            validatedSettings = try settingsSchema.validate(given, path: "plugins.\(name)")
        } catch {
            throw PluginError("settings of plugin \(name): \(error.message)")
        }
        guard FileManager.default.fileExists(atPath: folder + "/handler.lua") else { throw PluginError("\(folder)/handler.lua is missing") }
        try vm.loadModule(file: folder + "/handler.lua", as: "handler", chunkName: relative(folder + "/handler.lua", to: root))
        if binds["sink_backend"] != nil && !vm.hasFunction("handler", "on_sink_create") {
            throw PluginError("\(folder)/handler.lua must return a table with an on_sink_create function")
        }
        return PluginManifest(name: name, version: schema["version"]?.stringValue ?? "0.0.0",
                              description: schema["description"]?.stringValue ?? "", folder: folder,
                              sinkBackend: binds["sink_backend"]?.stringValue,
                              bindings: binds.keys.sorted(), sinkSchema: sinkSchema, settingsSchema: settingsSchema,
                              settings: validatedSettings, capabilities: capabilities, metrics: metrics)
    }

    /// The keys `schema.lua` may hold, and those of its parts: anything else is a mistake (`sinks` for
    /// `sink`) that would otherwise silently validate nothing.
    static let topLevelKeys: Set<String> = ["name", "version", "description", "binds", "sink", "settings", "capabilities", "metrics"]
    static let bindingKeys: Set<String> = ["sink_backend", "collector_status"]

    static func checkTopLevel(_ schema: [String: Value]) throws(ConfigSchemaError) {
        func unknown(_ key: String, in allowed: Set<String>, path: String) -> ConfigSchemaError {
            let where_ = path.isEmpty ? key : path + "." + key
            var message = "\(where_) is not a schema key"
            if let guess = ConfigSchema.closest(key, in: allowed) { message += " (did you mean \(guess)?)" }
            return ConfigSchemaError(field: where_, message: message + "; keys\(path.isEmpty ? "" : " of " + path): " + allowed.sorted().joined(separator: ", "))
        }
        for key in schema.keys.sorted() where !topLevelKeys.contains(key) { throw unknown(key, in: topLevelKeys, path: "") }
        for part in ["sink", "settings"] {
            guard let value = schema[part] else { continue }
            if case .list(let items) = value, items.isEmpty { continue }
            guard case .map(let entries) = value else { throw ConfigSchemaError(field: part, message: "\(part) must be a table: { fields = { ... } }") }
            for key in entries.keys.sorted() where key != "fields" { throw unknown(key, in: ["fields"], path: part) }
        }
        if let binds = schema["binds"] {
            guard case .map(let entries) = binds else {
                throw ConfigSchemaError(field: "binds", message: "binds must be a table such as { sink_backend = \"mybackend\" }")
            }
            for key in entries.keys.sorted() where !bindingKeys.contains(key) { throw unknown(key, in: bindingKeys, path: "binds") }
            if let backend = entries["sink_backend"], backend.stringValue?.isEmpty != false {
                throw ConfigSchemaError(field: "binds.sink_backend", message: "binds.sink_backend must be the backend's name (a string)")
            }
            if let status = entries["collector_status"], status != .bool(true) {
                throw ConfigSchemaError(field: "binds.collector_status", message: "binds.collector_status must be true")
            }
        }
        for key in ["name", "version", "description"] where schema[key] != nil && schema[key]?.stringValue == nil {
            throw ConfigSchemaError(field: key, message: "\(key) must be a string")
        }
    }

    /// `plugins/prometheus/handler.lua`, as errors should name it.
    static func relative(_ path: String, to root: String) -> String {
        let base = (root as NSString).lastPathComponent
        guard path.hasPrefix(root + "/") else { return path }
        return base + "/" + path.dropFirst(root.count + 1)
    }
}

public struct PluginError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
