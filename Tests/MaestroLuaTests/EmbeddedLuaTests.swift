import Foundation
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroLua

/// The sandbox's own Lua (Sources/MaestroLua/lua/): compiled into the binary from a generated source,
/// so these check that the generated source is current and that the files compile, as `maestro plugins
/// lint` checks a plugin's. Their specs run in MaestroPluginHostTests (the spec runner lives there).
@Suite("Embedded Lua", .testThreads, .timeLimit(.minutes(2)))
struct EmbeddedLuaTests {
    static let folder = "Sources/MaestroLua/lua"

    /// Every .lua file under the folder, the specs included, relative to the repository.
    static func luaFiles() throws -> [String] {
        let enumerator = try #require(FileManager.default.enumerator(atPath: repositoryRoot + "/" + folder))
        return enumerator.compactMap { $0 as? String }.filter { $0.hasSuffix(".lua") }.sorted().map { folder + "/" + $0 }
    }

    /// Compiles source as a text chunk in the sandbox without running it; nil when it compiles, else the message.
    static func compileError(_ source: String, chunkName: String) throws -> String? {
        let vm = try makeVM()
        try vm.loadModule(source: "return function(source, name) local _, message = load(source, name, 't') return message end",
                          chunkName: "=lint", as: "lint")
        return try vm.call("lint", nil, [.string(source), .string("@" + chunkName)]).first??.stringValue
    }

    @Test("the generated EmbeddedLua.swift holds each lua/*.lua file exactly (else run scripts/generate-lua)")
    func generatedSourceIsCurrent() throws {
        let embedded = try Self.luaFiles().filter { !$0.contains("/spec/") }
        #expect(embedded.map { String($0.split(separator: "/").last!) } == EmbeddedLua.files.keys.sorted(),
                "the .lua files and the generated constants differ: run scripts/generate-lua")
        for path in embedded {
            let text = try String(contentsOfFile: repositoryRoot + "/" + path, encoding: .utf8)
            let current = EmbeddedLua.files[String(path.split(separator: "/").last!)] == text
            #expect(current, "\(path) changed: run scripts/generate-lua")
        }
    }

    @Test("every file compiles as a text chunk (the lint plugins get)")
    func everyFileCompiles() throws {
        let files = try Self.luaFiles()
        #expect(files.contains("\(Self.folder)/sandbox.lua") && files.contains("\(Self.folder)/patterns.lua")
                && files.contains("\(Self.folder)/spec/sandbox_spec.lua") && files.contains("\(Self.folder)/spec/patterns_spec.lua"), "\(files)")
        for path in files {
            let error = try Self.compileError(try String(contentsOfFile: repositoryRoot + "/" + path, encoding: .utf8), chunkName: path)
            #expect(error == nil, "\(error ?? "")")
        }
    }

    @Test("a syntax error is reported with the file and line")
    func syntaxErrorNamesTheLine() throws {
        let path = "\(Self.folder)/sandbox.lua"
        var lines = try String(contentsOfFile: repositoryRoot + "/" + path, encoding: .utf8).components(separatedBy: "\n")
        lines[39] = "local = 1"
        let error = try #require(try Self.compileError(lines.joined(separator: "\n"), chunkName: path))
        #expect(error.hasPrefix("\(path):40: "), "\(error)")
    }
}
