public import Logging
public import MaestroCore
internal import MaestroLua
public import MaestroValue
internal import MaestroYAML

/// Runs a Lua template (`templates/<name>.lua`) in a sandbox of its own: templates get the yaml,
/// json, log and template functions only — no Redis, no Kubernetes, no HTTP. Confined to one thread.
public final class TemplateRenderer: CollectorRenderer {
    public let root: String
    public let templateName: String
    public let valuesSchema: ConfigSchema
    /// The template's values from the config file (`templates: {<name>: {...}}`), validated, defaulted.
    public let values: Value
    private let vm: LuaVM

    /// `maestro.template.render(name, values)`: renders another template of the same folder.
    static let templateModule = LuaHostModule(name: "template", luaSource: """
    return {
      render = function(name, values)
        if type(name) ~= "string" then error("maestro.template.render: bad argument #1 (string expected)", 2) end
        local template = require(name)
        if type(template) ~= "table" or type(template.render) ~= "function" then
          error("maestro.template.render: template " .. name .. " has no render function", 2)
        end
        return template.render(values)
      end,
    }
    """)

    public init(root: String, templateName: String = "otel-collector", settings: Value = .map([:]),
                limits: PluginCatalog.LuaLimits = PluginCatalog.LuaLimits(), logger: Logger = Logger(label: "maestro.templates")) throws {
        self.root = root
        self.templateName = templateName
        let path = root + "/" + templateName + ".lua"
        let relative = PluginCatalog.relative(path, to: root)
        vm = try LuaVM(configuration: LuaConfiguration(name: "template:" + templateName, instructionBudget: limits.instructionBudget,
                                                       memoryLimitBytes: limits.memoryLimitBytes, moduleRoots: [root], logger: logger),
                       modules: [Self.templateModule]) { vm throws(LuaError) in
            try vm.loadModule(file: path, as: "template", chunkName: relative)
            try vm.sealGlobals()
        }
        guard vm.hasFunction("template", "render") else { throw PluginError("\(relative) must return a table with a render function") }
        let valuesField = try vm.moduleValue("template", field: "values")
        valuesSchema = try ConfigSchema(fields: valuesField["fields"], path: "values.fields")
        do {
            values = try valuesSchema.validate(settings, path: "templates.\(templateName)")
        } catch {
            throw PluginError("values of template \(templateName): \(error.message)")
        }
    }

    /// Renders the objects of one collector.
    public func render(_ inputs: CollectorInputs) throws -> RenderedCollector {
        guard case .map(var entries) = values else { throw PluginError("template values must be a map") }
        entries["collector_name"] = .string(inputs.collectorName)
        entries["sink_id"] = .string(inputs.sinkID)
        entries["owner_id"] = .string(inputs.ownerID)
        entries["config_yaml"] = .string(inputs.configYAML)
        entries["config_hash"] = .string(inputs.configHash)
        let results = try vm.call("template", "render", [.map(entries)])
        guard case .list(let objects)? = results.first ?? nil, !objects.isEmpty else {
            throw PluginError("template \(templateName): render must return a non-empty list of objects")
        }
        for (index, object) in objects.enumerated() {
            guard object["kind"]?.stringValue != nil, object["apiVersion"]?.stringValue != nil,
                  object["metadata"]?["name"]?.stringValue != nil else {
                throw PluginError("template \(templateName): object #\(index + 1) needs apiVersion, kind and metadata.name")
            }
        }
        let namespace = entries["namespace"]?.stringValue ?? objects.first?["metadata"]?["namespace"]?.stringValue ?? "default"
        return RenderedCollector(name: inputs.collectorName, ownerID: inputs.ownerID, namespace: namespace, objects: objects,
                                 yaml: try YAML.emitAll(objects))
    }
}
