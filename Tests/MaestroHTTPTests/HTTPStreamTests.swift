import Foundation
import MaestroTestSupport
import Synchronization
import Testing

@testable import MaestroHTTP

/// Collects a stream's pieces across the callback and the test.
final class ReceivedChunks: Sendable {
    private let bytes = Mutex<[UInt8]>([])
    func append(_ chunk: [UInt8]) { bytes.withLock { $0 += chunk } }
    var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
}

@Suite("streamed responses (watches) against a loopback server", .testThreads, .timeLimit(.minutes(2)))
struct HTTPStreamTests {
    @Test("a chunked body reaches the callback piece by piece; the total timeout does not apply to a stream")
    func chunks() throws {
        let server = try HTTPTestServer()
        // Five lines 0.2 s apart last about a second: three times the total timeout a plain request gets.
        let client = try HTTPClient(options: HTTPClientOptions(totalTimeoutMilliseconds: 300))
        let received = ReceivedChunks()
        let result = try client.stream(HTTPRequest(url: server.baseURL + "/stream?lines=5&interval=0.2"), idleTimeoutSeconds: 10) { chunk in
            received.append(chunk)
            return true
        }
        #expect(result.status == 200)
        #expect(!result.endedByCaller)
        #expect(received.text == "line 1\nline 2\nline 3\nline 4\nline 5\n")
    }

    @Test("the callback sees data before the response ends, and returning false ends the transfer")
    func callbackEnds() throws {
        let server = try HTTPTestServer()
        let client = try HTTPClient()
        let received = ReceivedChunks()
        // The server sends one line, then holds the connection for two minutes: only delivery before the
        // end lets the callback see it, and only the callback's false ends the call before the time limit.
        let result = try client.stream(HTTPRequest(url: server.baseURL + "/stream?lines=1&hold=120"), idleTimeoutSeconds: 600) { chunk in
            received.append(chunk)
            return false
        }
        #expect(result.endedByCaller)
        #expect(received.text == "line 1\n")
        // The handle is usable again afterwards.
        #expect(try client.perform(HTTPRequest(url: server.baseURL + "/echo")).status == 200)
    }

    @Test("a stop asked from another thread ends a stream that receives nothing, within seconds")
    func stopWhileBlocked() throws {
        let server = try HTTPTestServer()
        let client = try HTTPClient()
        let stop = Mutex(false)
        let received = ReceivedChunks()
        let ended = Mutex<Date?>(nil)
        let thread = Thread {
            _ = eventually(timeout: 10) { received.text == "line 1\n" }
            stop.withLock { $0 = true }
            ended.withLock { $0 = Date() }
        }
        thread.start()
        let result = try client.stream(HTTPRequest(url: server.baseURL + "/stream?lines=1&hold=120"), idleTimeoutSeconds: 600,
                                       shouldStop: { stop.withLock { $0 } }) { chunk in
            received.append(chunk)
            return true
        }
        let stoppedAt = try #require(ended.withLock { $0 })
        #expect(result.endedByCaller)
        #expect(Date().timeIntervalSince(stoppedAt) < 5, "curl asks about a stop about once a second")
    }

    @Test("a connection that carries nothing for the idle timeout fails as a timeout")
    func idleTimeout() throws {
        let server = try HTTPTestServer()
        // A total timeout longer than the server's 20 s of silence: only the idle timeout can end it.
        let client = try HTTPClient(options: HTTPClientOptions(totalTimeoutMilliseconds: 600_000))
        let received = ReceivedChunks()
        let started = Date()
        let error = try #require(throws: HTTPError.self) {
            try client.stream(HTTPRequest(url: server.baseURL + "/stream?lines=1&hold=20"), idleTimeoutSeconds: 1) { chunk in
                received.append(chunk)
                return true
            }
        }
        #expect(error.kind == .timeout)
        #expect(Date().timeIntervalSince(started) < 15, "the idle timeout, not the server's end")
        #expect(received.text == "line 1\n")
    }

    @Test("an answer that is not 2xx is returned whole, not streamed")
    func errorAnswer() throws {
        let server = try HTTPTestServer()
        let client = try HTTPClient()
        let received = ReceivedChunks()
        let result = try client.stream(HTTPRequest(url: server.baseURL + "/status/410"), idleTimeoutSeconds: 10) { chunk in
            received.append(chunk)
            return true
        }
        #expect(result.status == 410)
        #expect(received.text.isEmpty)
        #expect(result.text.contains("\"path\": \"/status/410\""))
    }

    @Test("a stream keeps the URL checks of a plain request")
    func urlChecks() throws {
        let client = try HTTPClient()
        let error = try #require(throws: HTTPError.self) {
            try client.stream(HTTPRequest(url: "http://127.0.0.1/a b"), idleTimeoutSeconds: 10) { _ in true }
        }
        #expect(error.kind == .invalidRequest)
    }
}
