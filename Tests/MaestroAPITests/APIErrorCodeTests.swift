import Foundation
import GRPCCore
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import Testing

@testable import MaestroAPI

@Suite("gRPC API error codes", .serialized, .testThreads, .timeLimit(.minutes(2)))
struct APIErrorCodeTests {
    @Test("FAILED_PRECONDITION when the template rejects the objects; UNAVAILABLE while Redis cannot be used, for a watch too (proto/maestro/v1)")
    func failedPreconditionAndUnavailable() async throws {
        // The shipped template, but refusing one sink, as a broken template would.
        let templates = try TemporaryDirectory()
        let shipped = try String(contentsOfFile: repositoryRoot + "/templates/otel-collector.lua", encoding: .utf8)
        let refusing = shipped.replacingOccurrences(of: "function template.render(values)\n",
                                                    with: "function template.render(values)\n  if values.sink_id == \"rejected\" then error(\"this template rejects the sink\") end\n")
        #expect(refusing != shipped)
        try templates.write("otel-collector.lua", refusing)
        let server = try LocalRedisServer.start()
        defer { server.stop(hard: true) }
        let fixture = try APIFixture(redisURL: server.url, templates: templates.path)
        try await fixture.start()
        let client = try fixture.client()
        try fixture.storeConfig("rejected")
        try fixture.storeConfig("fine")
        #expect(await code { _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "rejected" }) } == .failedPrecondition)
        #expect(await code { _ = try await client.collectors.renderOtelCollector(.with { $0.sinkID = "rejected" }) } == .failedPrecondition)
        #expect(await code { _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "fine" }) } == nil)

        // Redis turns maestro away (every connection dropped, new ones refused): not killed, so its port
        // cannot be taken by another test's server meanwhile and answer in its place.
        let admin = try RedisConnection(url: try RedisURL(parsing: server.url))
        _ = try admin.command(["CONFIG", "SET", "requirepass", "maestro-is-locked-out"])
        _ = try admin.command(["CLIENT", "KILL", "TYPE", "normal"])
        #expect(await code { _ = try await client.collectors.getOtelCollector(.with { $0.sinkID = "fine" }) } == .unavailable)
        #expect(await code { _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "fine" }) } == .unavailable)
        #expect(await code { _ = try await client.collectors.listOtelCollectors(.init()) } == .unavailable)
        // A watch cannot pin its place in the status stream: it fails at once rather than stay silent.
        #expect(await code {
            // With the client's deadline: a watch that stayed silent would end DEADLINE_EXCEEDED, not hang.
            try await client.collectors.watchOtelCollectors(.with { $0.sinkID = "fine" }, options: client.options) { response in
                for try await _ in response.messages {}
            }
        } == .unavailable)
        await client.close()
        await fixture.stop()
    }
}
