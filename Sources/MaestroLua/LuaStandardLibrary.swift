internal import Logging
internal import MaestroValue
internal import MaestroYAML

/// The part of the `maestro` host API every VM has: log, yaml, json, null, empty_map.
enum LuaStandardLibrary {
    static func modules(configuration: LuaConfiguration) -> [LuaHostModule] {
        // Decoding is bounded by the VM's memory cap: a document that expands to more nodes or bytes than
        // the VM could hold is refused (`nil, err`) before anything is built in the VM.
        let limits = ValueLimits.memoryCap(configuration.memoryLimitBytes)
        return [
            LuaHostModule(name: nil, functions: [
                LuaHostFunction("empty_map") { _ in [.map([:])] },
            ], constants: ["null": .null]),
            LuaHostModule(name: "log", functions: ["trace", "debug", "info", "warn", "error"].map { level in
                log(level: level, configuration: configuration)
            }),
            LuaHostModule(name: "yaml", functions: [
                LuaHostFunction("encode") { arguments throws(LuaHostError) in
                    let value = try requiredValue(arguments, 1)
                    do {
                        return [.string(try YAML.emit(value))]
                    } catch {
                        return [nil, .string("\(error)")]
                    }
                },
                LuaHostFunction("decode") { arguments throws(LuaHostError) in
                    let text = try requiredString(arguments, 1)
                    do {
                        return [try YAML.parse(text, limits: limits)]
                    } catch {
                        return [nil, .string("\(error)")]
                    }
                },
                LuaHostFunction("decode_all") { arguments throws(LuaHostError) in
                    let text = try requiredString(arguments, 1)
                    do {
                        return [.list(try YAML.parseAll(text, limits: limits))]
                    } catch {
                        return [nil, .string("\(error)")]
                    }
                },
            ]),
            LuaHostModule(name: "json", functions: [
                LuaHostFunction("encode") { arguments throws(LuaHostError) in
                    let value = try requiredValue(arguments, 1)
                    do {
                        return [.string(try JSON.encode(value))]
                    } catch {
                        return [nil, .string("\(error)")]
                    }
                },
                LuaHostFunction("decode") { arguments throws(LuaHostError) in
                    let text = try requiredString(arguments, 1)
                    do {
                        return [try JSON.decode(text, limits: limits)]
                    } catch {
                        return [nil, .string("\(error)")]
                    }
                },
            ]),
        ]
    }

    static func requiredValue(_ arguments: [Value?], _ position: Int) throws(LuaHostError) -> Value {
        guard arguments.count >= position, let value = arguments[position - 1] else {
            throw LuaHostError.badArgument(position, "value expected, got nil")
        }
        return value
    }

    static func requiredString(_ arguments: [Value?], _ position: Int) throws(LuaHostError) -> String {
        guard arguments.count >= position, let value = arguments[position - 1] else {
            throw LuaHostError.badArgument(position, "string expected, got nil")
        }
        guard case .string(let text) = value else {
            throw LuaHostError.badArgument(position, "string expected, got \(value.kindName)")
        }
        return text
    }

    /// Keys whose values are never logged, whatever a plugin passes.
    static let secretKeyFragments = ["password", "token", "secret", "authorization", "credential", "apikey", "api_key"]

    static func log(level: String, configuration: LuaConfiguration) -> LuaHostFunction {
        let loggerLevel: Logger.Level
        switch level {
        case "trace": loggerLevel = .trace
        case "debug": loggerLevel = .debug
        case "info": loggerLevel = .info
        case "warn": loggerLevel = .warning
        default: loggerLevel = .error
        }
        let logger = configuration.logger
        let plugin = configuration.name
        return LuaHostFunction(level) { arguments throws(LuaHostError) in
            let message = try requiredString(arguments, 1)
            var metadata: Logger.Metadata = ["plugin.name": .string(plugin)]
            if arguments.count >= 2, let fields = arguments[1] {
                guard case .map(let entries) = fields else {
                    throw LuaHostError.badArgument(2, "table of fields expected, got \(fields.kindName)")
                }
                for (key, value) in entries {
                    metadata[key] = .string(loggable(key: key, value: value))
                }
            }
            logger.log(level: loggerLevel, "\(message)", metadata: metadata)
            return []
        }
    }

    static func loggable(key: String, value: Value) -> String {
        let lowered = key.lowercased()
        if secretKeyFragments.contains(where: { lowered.contains($0) }) { return "***" }
        switch value {
        case .string(let text): return text
        case .map, .list: return "<\(value.kindName)>"
        default: return (try? JSON.encode(value)) ?? value.kindName
        }
    }

    /// `print(...)` goes to the log at info level, like `maestro.log.info`.
    static func print(configuration: LuaConfiguration) -> LuaHostFunction {
        let logger = configuration.logger
        let plugin = configuration.name
        return LuaHostFunction("print") { arguments in
            let text = arguments.map { argument -> String in
                guard let argument else { return "nil" }
                if case .string(let text) = argument { return text }
                return (try? JSON.encode(argument)) ?? argument.kindName
            }.joined(separator: "\t")
            logger.info("\(text)", metadata: ["plugin.name": .string(plugin)])
            return []
        }
    }
}

/// Resolves `require "a.b"` to `<root>/a/b.lua` or `<root>/a/b/init.lua`, only inside the roots.
struct LuaModuleResolver {
    let roots: [String]

    /// `source, "@path"` or `nil, message`, as the sandbox's `require` expects.
    func read(_ name: String) -> [Value?] {
        guard isValidName(name) else {
            return [nil, .string("module '\(name)' not found: module names are letters, digits, '_', '-' and '.'")]
        }
        let relative = name.split(separator: ".").joined(separator: "/")
        var tried: [String] = []
        for root in roots {
            for candidate in ["\(root)/\(relative).lua", "\(root)/\(relative)/init.lua"] {
                tried.append(candidate)
                if isInside(candidate, root: root), let source = TextFile.read(candidate) {
                    return [.string(source), .string("@" + candidate)]
                }
            }
        }
        let searched = tried.isEmpty ? " (no module roots are configured)" : ": searched " + tried.joined(separator: ", ")
        return [nil, .string("module '\(name)' not found\(searched)")]
    }

    private func isValidName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 200, !name.hasPrefix("."), !name.hasSuffix("."), !name.contains("..") else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") }
    }

    /// A symbolic link must not lead out of the root.
    private func isInside(_ path: String, root: String) -> Bool {
        guard let resolvedRoot = realPath(root), let resolved = realPath(path) else { return false }
        return resolved.hasPrefix(resolvedRoot.hasSuffix("/") ? resolvedRoot : resolvedRoot + "/")
    }
}
