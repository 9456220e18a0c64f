import Foundation
import GRPCCore
import MaestroTestSupport
import Testing

@testable import MaestroAPI

@Suite("render redacts every credential", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct RedactionTests {
    static let config = """
    exporters:
      otlphttp:
        endpoint: https://otlp.example
        headers:
          X-Api-Key: header-key-value-1
          X-Scope-OrgID: tenant-header-value-2
        tls:
          insecure: false
    extensions:
      oauth2client:
        client_id: visible-client-id
        client_secret: client-secret-value-3
        token_url: https://auth.example/token
      bearertokenauth:
        token: bearer-token-value-4
    receivers:
      kafka:
        auth:
          sasl:
            username: visible-user
            password: sasl-password-value-5
    """
    static let secrets = ["header-key-value-1", "tenant-header-value-2", "client-secret-value-3", "bearer-token-value-4", "sasl-password-value-5"]

    @Test("without reveal_secrets: header values, client_secret and every credential-looking key are redacted in config, objects and diffs")
    func grpcRender() async throws {
        let fixture = try APIFixture()
        try await fixture.start()
        let client = try fixture.client()
        try fixture.storeConfig("r1", Self.config)
        _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "r1"; $0.ownerID = "o1" })
        let rendered = try await client.collectors.renderOtelCollector(.with { $0.sinkID = "r1" })
        #expect(!rendered.secretsRevealed)
        for output in [rendered.configYaml, rendered.objectsYaml, rendered.diffStored, rendered.diffLive] {
            for secret in Self.secrets {
                #expect(!output.contains(secret), "\(secret) shown in clear:\n\(output)")
            }
        }
        #expect(rendered.configYaml.contains("X-Api-Key: \"<redacted>\""), "\(rendered.configYaml)")
        #expect(rendered.configYaml.contains("client_secret: \"<redacted>\""))
        #expect(rendered.configYaml.contains("visible-client-id"), "what is no credential stays readable")
        #expect(rendered.configYaml.contains("visible-user"))
        #expect(rendered.configYaml.contains("https://otlp.example"))
        await fixture.stop()
    }
}
