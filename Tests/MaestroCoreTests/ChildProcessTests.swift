import Foundation
import MaestroCore
import MaestroTestSupport
import Testing

@Suite("child processes", .testThreads, .timeLimit(.minutes(2)))
struct ChildProcessTests {
    /// A child must not inherit maestro's descriptors: a credential plugin would hold maestro's
    /// authenticated Redis connections, and a socket a child keeps open is never closed for the peer (a
    /// gRPC server's graceful shutdown waited a minute for a client connection the client had closed).
    @Test("a child inherits only standard input, output and error")
    func descriptorsNotInherited() throws {
        var pipeEnds: [Int32] = [0, 0]
        #expect(pipe(&pipeEnds) == 0)
        // Not close-on-exec, as hiredis's sockets are not: a high number, as a busy process would have.
        let inheritable: Int32 = 97
        #expect(dup2(pipeEnds[1], inheritable) == inheritable)
        defer { [pipeEnds[0], pipeEnds[1], inheritable].forEach { close($0) } }
        let output = try TemporaryDirectory()
        // ls lists its own descriptors: standard input, output and error, and 3, its handle on the folder.
        let child = try ChildProcess(["/bin/ls", "-1", "/proc/self/fd"], logPath: output.path + "/fds")
        #expect(child.wait(timeout: 10))
        let listed = try String(contentsOfFile: output.path + "/fds", encoding: .utf8)
        #expect(listed.split(separator: "\n").map(String.init).sorted() == ["0", "1", "2", "3"], "descriptors open in the child: \(listed)")
    }
}
