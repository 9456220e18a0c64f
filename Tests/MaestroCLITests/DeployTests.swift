import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@Suite("deploy/: the manifests apply with kubectl and grant exactly what maestro uses", .serialized, .testThreads, .timeLimit(.minutes(4)))
struct DeployTests {
    let manifests = repositoryRoot + "/deploy/kubernetes"

    func kubectl(_ arguments: [String], kubeconfig: String) throws -> (code: Int32, output: String) {
        try runProgram([try executable("kubectl"), "--kubeconfig", kubeconfig] + arguments)
    }

    @Test("kubectl apply creates every object, a second apply changes nothing, and the objects are what they should be")
    func applyWithKubectl() throws {
        let double = try KubeAPIDouble(namespaces: [])
        let directory = try TemporaryDirectory()
        let kubeconfig = try double.kubeconfig(in: directory)
        let first = try kubectl(["apply", "--validate=false", "-f", manifests], kubeconfig: kubeconfig)
        #expect(first.code == 0, "\(first.output)")
        for object in ["namespace/maestro", "namespace/otelcollectors", "serviceaccount/maestro", "role.rbac.authorization.k8s.io/maestro",
                       "rolebinding.rbac.authorization.k8s.io/maestro", "configmap/maestro-config", "deployment.apps/maestro", "service/maestro",
                       "poddisruptionbudget.policy/maestro"] {
            #expect(first.output.contains("\(object) created"), "\(object): \(first.output)")
        }
        let optional = try kubectl(["apply", "--validate=false", "-f", manifests + "/optional"], kubeconfig: kubeconfig)
        #expect(optional.code == 0, "\(optional.output)")
        #expect(optional.output.contains("clusterrole.rbac.authorization.k8s.io/maestro-create-namespace created"))
        #expect(optional.output.contains("clusterrolebinding.rbac.authorization.k8s.io/maestro-create-namespace created"))
        let again = try kubectl(["apply", "--validate=false", "-f", manifests], kubeconfig: kubeconfig)
        #expect(again.code == 0 && !again.output.contains("created"), "\(again.output)")
        let serverSide = try kubectl(["apply", "--server-side", "--validate=false", "-f", manifests], kubeconfig: kubeconfig)
        #expect(serverSide.code == 0, "\(serverSide.output)")

        let deployment = try double.get("/apis/apps/v1/namespaces/maestro/deployments/maestro").body
        let pod = deployment["spec"]?["template"]?["spec"]
        #expect(pod?["serviceAccountName"] == "maestro")
        let container = pod?["containers"]?.listValue?.first
        #expect(container?["livenessProbe"]?["httpGet"]?["path"] == "/healthz")
        #expect(container?["readinessProbe"]?["httpGet"]?["path"] == "/readyz")
        #expect(container?["lifecycle"]?["preStop"]?["exec"]?["command"] != nil)
        // Three replicas, preferably on three nodes, at most one evicted at a time: a leader and a warm
        // standby through a drain.
        #expect(deployment["spec"]?["replicas"] == 3)
        let antiAffinity = pod?["affinity"]?["podAntiAffinity"]?["preferredDuringSchedulingIgnoredDuringExecution"]?.listValue?.first?["podAffinityTerm"]
        #expect(antiAffinity?["topologyKey"] == "kubernetes.io/hostname")
        #expect(antiAffinity?["labelSelector"]?["matchLabels"] == deployment["spec"]?["selector"]?["matchLabels"])
        let budget = try double.get("/apis/policy/v1/namespaces/maestro/poddisruptionbudgets/maestro").body
        #expect(budget["spec"]?["maxUnavailable"] == 1)
        #expect(budget["spec"]?["selector"]?["matchLabels"] == deployment["spec"]?["selector"]?["matchLabels"])
        let grace = pod?["terminationGracePeriodSeconds"]?.intValue ?? 0
        #expect(grace > 35, "the grace period covers preStop and the 30 s drain")
        let service = try double.get("/api/v1/namespaces/maestro/services/maestro").body
        let ports = (service["spec"]?["ports"]?.listValue ?? []).compactMap { $0["port"]?.intValue }.map(Int.init)
        #expect(Set(ports) == [50051, 9464])
        #expect(try double.get("/apis/rbac.authorization.k8s.io/v1/namespaces/otelcollectors/roles/maestro").status == 200)
    }

    @Test("the ConfigMap's maestro.yaml is a valid configuration with the Deployment's secret files")
    func configurationIsValid() throws {
        let configMap = try YAML.parse(try String(contentsOfFile: manifests + "/30-config.yaml", encoding: .utf8))
        let text = try #require(configMap["data"]?["maestro.yaml"]?.stringValue)
        let directory = try TemporaryDirectory()
        let file = try directory.write("maestro.yaml", text)
        let environment = [
            "MAESTRO_REDIS_URL_FILE": try directory.write("redis-url", "redis://:deploy-redis-pw@redis.maestro:6379/0"),
            "MAESTRO_SECRET_KEY_FILE": try directory.write("secret-key", "deploy-orb-key"),
            "MAESTRO_GRPC_TOKEN_FILE": try directory.write("grpc-token", "deploy-grpc-token"),
        ]
        let result = try maestro(["config", "--config", file], environment: environment)
        #expect(result.code == 0, "\(result.output)")
        #expect(result.output.contains("0.0.0.0:50051"))
        for secret in ["deploy-redis-pw", "deploy-orb-key", "deploy-grpc-token"] {
            #expect(!result.output.contains(secret))
        }
    }

    /// (apiGroup, resource, verb) triples a Role's rules grant.
    func grants(_ rules: [Value]) -> Set<[String]> {
        var granted: Set<[String]> = []
        for rule in rules {
            for group in rule["apiGroups"]?.listValue ?? [] {
                for resource in rule["resources"]?.listValue ?? [] {
                    for verb in rule["verbs"]?.listValue ?? [] {
                        granted.insert([group.stringValue ?? "", resource.stringValue ?? "", verb.stringValue ?? ""])
                    }
                }
            }
        }
        return granted
    }

    @Test("a collector namespace set only in the config file's template values is used for objects, the Lease, --create-namespace and the sweep")
    func namespaceFromConfigFile() throws {
        let double = try KubeAPIDouble(namespaces: [])
        let directory = try TemporaryDirectory()
        let kubeconfig = try double.kubeconfig(in: directory)
        let file = try directory.write("maestro.yaml", "templates:\n  otel-collector:\n    namespace: team-a\n")
        let prefix = RedisTestServer.uniquePrefix("ns")
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
        let run = try ChildProcess([maestroBinary(), "run", "--config", file, "--plugins-dir", repositoryRoot + "/plugins",
                                    "--templates-dir", repositoryRoot + "/templates", "--kube-backend", "kubernetes", "--kubeconfig", kubeconfig,
                                    "--create-namespace", "--resync-interval", "1s", "--orphan-grace", "0s", "--consumer-name", "ns"] + common,
                                   logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let config = #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#
        for sink in ["ns-1", "ns-2"] {
            #expect(try runProgram([maestroBinary(), "sinks", "create", "--sink-id", sink, "--backend", "prometheus", "--sink-config", config]
                                   + common).code == 0)
        }
        let deployments = "/apis/apps/v1/namespaces/team-a/deployments/"
        #expect(eventually { (try? double.get(deployments + "otel-ns-2").status) == 200 && (try? double.get(deployments + "otel-ns-1").status) == 200 },
                "\((try? directory.read("run.log")) ?? "")")
        #expect(try double.get("/api/v1/namespaces/team-a").status == 200, "--create-namespace created the template's namespace")
        #expect(eventually { (try? double.get("/apis/coordination.k8s.io/v1/namespaces/team-a/leases/maestro-leader").status) == 200 })
        #expect(try double.get("/api/v1/namespaces/otelcollectors").status == 404, "nothing in the default namespace")
        // Everything Redis knew of ns-2 vanishes (a Redis emptied by hand): the sweep in team-a removes its objects.
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        for hash in ["deployments", "collectors", "records", "config"] { try redis.hdel(prefix + hash, fields: ["ns-2"]) }
        #expect(eventually { (try? double.get(deployments + "otel-ns-2").status) == 404 }, "the orphan sweep looks in team-a")
        #expect(try double.get(deployments + "otel-ns-1").status == 200)
    }

    @Test("every request maestro makes in a collector's life is granted by the Role, and every grant is used")
    func roleMatchesWhatMaestroDoes() throws {
        let double = try KubeAPIDouble()
        let directory = try TemporaryDirectory()
        let kubeconfig = try double.kubeconfig(in: directory)
        // maestro runs as the service account the Role is bound to: the double enforces RBAC, so a request
        // the Role does not grant is answered 403 as a real API server would.
        let rbac = try kubectl(["apply", "--validate=false", "-f", manifests + "/20-rbac.yaml"], kubeconfig: kubeconfig)
        #expect(rbac.code == 0, "\(rbac.output)")
        try double.post("/_double/identity", ["token": "test-token", "user": "system:serviceaccount:maestro:maestro"])
        try double.post("/_double/reset-audit", .map([:]))
        let prefix = RedisTestServer.uniquePrefix("rbac")
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
        let run = try ChildProcess([maestroBinary(), "run", "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                                    "--kube-backend", "kubernetes", "--kubeconfig", kubeconfig, "--resync-interval", "1s", "--orphan-grace", "0s",
                                    "--consumer-name", "rbac"] + common, logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let config = #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#
        #expect(try maestro(["sinks", "create", "--sink-id", "rbac-1", "--backend", "prometheus", "--sink-config", config] + common).code == 0)
        #expect(eventually { (try? double.get("/apis/apps/v1/namespaces/otelcollectors/deployments/otel-rbac-1").status) == 200 })
        try double.setLogs("otel-rbac-1", "error exporting items, request to https://p.example/w responded with HTTP Status Code 401\n")
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        // The log read is granted: the 401 in it makes the collector's status error.
        #expect(eventually { ((try? redis.hget(prefix + "collectors", field: "rbac-1")) ?? nil).flatMap { try? JSON.decode($0) }?["status"] == "error" })
        #expect(try maestro(["sinks", "remove", "--sink-id", "rbac-1"] + common).code == 0)
        #expect(eventually { (try? double.get("/apis/apps/v1/namespaces/otelcollectors/deployments/otel-rbac-1").status) == 404 })
        // A sink whose collector was deleted behind maestro's back is re-created by the resync (drift).
        #expect(try maestro(["sinks", "create", "--sink-id", "rbac-2", "--backend", "prometheus", "--sink-config", config] + common).code == 0)
        #expect(eventually { (try? double.get("/apis/apps/v1/namespaces/otelcollectors/deployments/otel-rbac-2").status) == 200 })
        let diff = try maestro(["diff", "--sink-id", "rbac-2", "--kube-backend", "kubernetes", "--kubeconfig", kubeconfig] + common)
        #expect(diff.output.contains("no difference"), "\(diff.output)")
        run.signal(SIGTERM)
        #expect(run.wait(timeout: 30))
        // A restart renews the lease it held (an update).
        let restarted = try ChildProcess([maestroBinary(), "run", "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                                          "--kube-backend", "kubernetes", "--kubeconfig", kubeconfig, "--consumer-name", "rbac"] + common,
                                         logPath: directory.path + "/restarted.log")
        #expect(eventually { ((try? directory.read("restarted.log")) ?? "").contains("became the leader") })
        restarted.signal(SIGTERM)
        #expect(restarted.wait(timeout: 30))

        let audit = try double.post("/_double/audit", .map([:]))["requests"]?.listValue ?? []
        var used: Set<[String]> = []
        for request in audit {
            #expect(request["namespace"] == "otelcollectors", "maestro only works in the collector namespace: \(request)")
            used.insert([request["apiGroup"]?.stringValue ?? "", request["resource"]?.stringValue ?? "", request["verb"]?.stringValue ?? ""])
        }
        let documents = try YAML.parseAll(try String(contentsOfFile: manifests + "/20-rbac.yaml", encoding: .utf8))
        let role = try #require(documents.first { $0["kind"] == "Role" })
        #expect(role["metadata"]?["namespace"] == "otelcollectors")
        let granted = grants(role["rules"]?.listValue ?? [])
        #expect(used.subtracting(granted).isEmpty, "requests the Role does not grant: \(used.subtracting(granted).sorted { $0.description < $1.description })")
        // ConfigMaps are granted for plugins' maestro.k8s, which the shipped plugins do not use.
        let forPlugins: Set<[String]> = Set(["get", "list", "create", "patch", "delete"].map { ["", "configmaps", $0] })
        let unused = granted.subtracting(used).subtracting(forPlugins)
        #expect(unused.isEmpty, "grants maestro did not use: \(unused.sorted { $0.description < $1.description })")
    }

    @Test("the Dockerfile copies what exists and builds the maestro product")
    func dockerfile() throws {
        let text = try String(contentsOfFile: repositoryRoot + "/deploy/Dockerfile", encoding: .utf8)
        for line in text.split(separator: "\n") where line.hasPrefix("COPY ") && !line.contains("--from") {
            let source = String(line.split(separator: " ")[1])
            #expect(FileManager.default.fileExists(atPath: repositoryRoot + "/" + source), "\(line)")
        }
        #expect(text.contains("--product maestro"))
        for package in ["liblua5.4-dev", "libhiredis-dev", "libyaml-dev", "libcurl4-openssl-dev"] {
            #expect(text.contains(package))
        }
    }
}
