public import Foundation
public import MaestroCore

/// The repository's root folder, found from this source file's location.
public let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// A folder under /tmp removed when the value goes away.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init() throws {
        path = NSTemporaryDirectory() + "maestro-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    @discardableResult
    public func write(_ relative: String, _ text: String) throws -> String {
        let full = path + "/" + relative
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: full, atomically: true, encoding: .utf8)
        return full
    }

    public func read(_ relative: String) throws -> String {
        try String(contentsOfFile: path + "/" + relative, encoding: .utf8)
    }
}

/// Runs a program to completion and returns its exit code and combined output.
@discardableResult
public func runProgram(_ arguments: [String], environment: [String: String]? = nil, in directory: String? = nil) throws -> (code: Int32, output: String) {
    let log = NSTemporaryDirectory() + "maestro-run-" + UUID().uuidString
    defer { try? FileManager.default.removeItem(atPath: log) }
    var command = arguments
    if let directory {
        command = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", directory] + arguments
    }
    let child = try ChildProcess(command, environment: environment, logPath: log)
    child.wait()
    let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    return (child.exitCode ?? -1, output)
}

/// The built `maestro` executable, next to the test bundle (swift test builds it with the tests).
public func maestroBinary() -> String {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.pathExtension == "xctest" || url.lastPathComponent == "Contents" || url.lastPathComponent == "MacOS" {
        url.deleteLastPathComponent()
    }
    if !FileManager.default.fileExists(atPath: url.appendingPathComponent("maestro").path) {
        url.deleteLastPathComponent()
    }
    return url.appendingPathComponent("maestro").path
}

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass; the final answer.
/// Tests wait for asynchronous effects with this instead of sleeping a fixed time.
public func eventually(timeout: TimeInterval = 20, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// `eventually` for async tests: polls without blocking a thread of the cooperative pool.
public func eventually(timeout: TimeInterval = 20, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// The port a child process reports in its log once it listens: `maestro run` given port 0 logs
/// `http.port=` and `grpc.port=` (text) or `"http.port":"…"` (JSON). No port is picked before the
/// child binds it, so no other process can take it in between.
public func loggedPort(_ key: String, in logPath: String, of process: ChildProcess, timeout: TimeInterval = 30) throws -> Int {
    var port: Int?
    _ = eventually(timeout: timeout) {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        for marker in [" \(key)=", "\"\(key)\":\""] {
            if let range = text.range(of: marker) {
                port = Int(text[range.upperBound...].prefix { $0.isNumber })
            }
        }
        return port != nil || !process.isRunning
    }
    guard let port else {
        throw ProcessError("no \(key) in \(logPath): \((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")")
    }
    return port
}
