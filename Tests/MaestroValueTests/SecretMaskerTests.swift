import MaestroValue
import MaestroTestSupport
import Testing

@Suite("the one secret masker", .testThreads, .timeLimit(.minutes(2)))
struct SecretMaskerTests {
    @Test("header values, credential-looking keys, env pairs and schema paths are masked; the rest stays")
    func mask() {
        let value: Value = [
            "exporters": ["otlphttp": ["endpoint": "https://e.example", "headers": ["X-Scope-OrgID": "tenant", "Authorization": "Bearer t"]]],
            "extensions": ["oauth2client": ["client_id": "id", "client_secret": "s3", "scopes": ["a"]]],
            "auth": ["username": "u", "PassWord": "p", "apiKeys": ["k1", "k2"]],
            "env": [["name": "API_TOKEN", "value": "v1"], ["name": "LOG_LEVEL", "value": "debug"]],
            "custom": ["opaque": "schema-secret", "port": 8080],
            "pod": ["automountServiceAccountToken": false, "volumes": [["secret": ["secretName": "otel-s"]]], "key_file": "/etc/k.pem",
                    "token_url": "https://auth.example/token"],
        ]
        let masked = SecretMasker(secretPaths: ["custom.opaque"]).mask(value)
        let redacted: Value = .string(SecretMasker.marker)
        #expect(masked["exporters"]?["otlphttp"]?["headers"]?["X-Scope-OrgID"] == redacted)
        #expect(masked["exporters"]?["otlphttp"]?["headers"]?["Authorization"] == redacted)
        #expect(masked["exporters"]?["otlphttp"]?["endpoint"] == "https://e.example")
        #expect(masked["extensions"]?["oauth2client"]?["client_secret"] == redacted)
        #expect(masked["extensions"]?["oauth2client"]?["client_id"] == "id")
        #expect(masked["auth"]?["username"] == "u")
        #expect(masked["auth"]?["PassWord"] == redacted)
        #expect(masked["auth"]?["apiKeys"] == .list([redacted, redacted]))
        #expect(masked["env"]?.listValue?[0]["value"] == redacted)
        #expect(masked["env"]?.listValue?[0]["name"] == "API_TOKEN")
        #expect(masked["env"]?.listValue?[1]["value"] == "debug")
        #expect(masked["custom"]?["opaque"] == redacted)
        #expect(masked["custom"]?["port"] == .int(8080))
        #expect(masked["pod"] == value["pod"], "references, paths, URLs and booleans are no credentials")
    }

    @Test("secrets quoted in free text are scrubbed, longest first")
    func scrub() {
        let config: Value = ["authentication": ["password": "hunter2", "token": "hunter2-long"], "exporter": ["headers": ["X-Key": "abc"]]]
        let text = "bad password hunter2, token hunter2-long, header abc, user ab"
        #expect(SecretMasker().scrub(text, secretsOf: config) == "bad password ***, token ***, header ***, user ab")
        #expect(SecretMasker().scrub(text, secretsOf: nil) == text)
    }

    @Test("Secret objects are masked whole")
    func objects() {
        let secret: Value = ["kind": "Secret", "metadata": ["name": "s"], "stringData": ["config.yaml": "exporters: {}"]]
        let masked = SecretMasker().maskObjects([secret])
        #expect(masked[0]["stringData"]?["config.yaml"] == .string(SecretMasker.marker))
        #expect(masked[0]["metadata"]?["name"] == "s")
    }
}
