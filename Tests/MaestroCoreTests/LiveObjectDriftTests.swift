import MaestroValue
import MaestroTestSupport
import Testing

@testable import MaestroCore

/// A Deployment as maestro's template renders it (the fields that matter here).
private let rendered: Value = [
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": ["name": "otel-s1", "namespace": "otel", "labels": ["app.kubernetes.io/managed-by": "maestro"]],
    "spec": [
        "selector": ["matchLabels": ["app.kubernetes.io/instance": "otel-s1"]],
        "template": [
            "metadata": ["labels": ["app.kubernetes.io/instance": "otel-s1"], "annotations": ["maestro.orb.community/config-hash": "abc"]],
            "spec": [
                "containers": [[
                    "name": "otel-collector", "image": "otel/opentelemetry-collector-contrib:0.98.0",
                    "args": ["--config=/conf/config.yaml"],
                    "ports": [["containerPort": 8888, "name": "metrics"]],
                    "env": [["name": "A", "value": "1"], ["name": "B", "value": "2"]],
                    "volumeMounts": [["name": "config", "mountPath": "/conf"]],
                    "resources": [:],
                ]],
                "volumes": [["name": "config", "secret": ["secretName": "otel-s1"]]],
            ],
        ],
    ],
]

/// The same Deployment as an API server keeps it: defaults filled in, managedFields, a controller's status.
private func live(_ edit: (inout Value) -> Void = { _ in }) -> Value {
    var object: Value = [
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": ["name": "otel-s1", "namespace": "otel", "uid": "u-1", "resourceVersion": "812", "generation": 3,
                     "labels": ["app.kubernetes.io/managed-by": "maestro"],
                     "managedFields": [["manager": "maestro", "operation": "Apply"], ["manager": "kube-controller-manager", "subresource": "status"]]],
        "spec": [
            "replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "strategy": ["type": "RollingUpdate", "rollingUpdate": ["maxSurge": "25%", "maxUnavailable": "25%"]],
            "selector": ["matchLabels": ["app.kubernetes.io/instance": "otel-s1"]],
            "template": [
                "metadata": ["labels": ["app.kubernetes.io/instance": "otel-s1"], "annotations": ["maestro.orb.community/config-hash": "abc"]],
                "spec": [
                    "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
                    "terminationGracePeriodSeconds": 30, "securityContext": [:],
                    "containers": [[
                        "name": "otel-collector", "image": "otel/opentelemetry-collector-contrib:0.98.0",
                        "args": ["--config=/conf/config.yaml"], "imagePullPolicy": "IfNotPresent",
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                        "ports": [["containerPort": 8888, "name": "metrics", "protocol": "TCP"]],
                        "env": [["name": "A", "value": "1"], ["name": "B", "value": "2"]],
                        "volumeMounts": [["name": "config", "mountPath": "/conf"]],
                        "resources": [:],
                    ]],
                    "volumes": [["name": "config", "secret": ["secretName": "otel-s1", "defaultMode": 420]]],
                ],
            ],
        ],
        "status": ["observedGeneration": 3, "replicas": 1, "availableReplicas": 1],
    ]
    edit(&object)
    return object
}

/// Sets a value at a path of map keys and list indexes.
private func set(_ object: inout Value, _ path: [Any], _ value: Value) {
    guard let head = path.first else {
        object = value
        return
    }
    let rest = Array(path.dropFirst())
    if let key = head as? String, case .map(var entries) = object {
        var child = entries[key] ?? .null
        set(&child, rest, value)
        entries[key] = child
        object = .map(entries)
    } else if let index = head as? Int, case .list(var items) = object {
        if index == items.count { items.append(.null) }
        set(&items[index], rest, value)
        object = .list(items)
    }
}

private var container: [Any] { ["spec", "template", "spec", "containers", 0] }

@Suite("Drift is a difference in what maestro renders", .testThreads, .timeLimit(.minutes(1)))
struct LiveObjectDriftTests {
    @Test("server defaults, managedFields, status and a controller's replicas are no drift")
    func defaultsAreNotDrift() {
        #expect(LiveObjectDrift.differences(rendered: rendered, live: live()).isEmpty)
        #expect(LiveObjectDrift.differences(rendered: rendered, live: live { set(&$0, ["spec", "replicas"], 4) }).isEmpty,
                "the template sets no replicas: an HPA owns them")
    }

    @Test("an edited image, a removed label, a changed env value or argument is drift, named by its path")
    func editsAreDrift() {
        #expect(LiveObjectDrift.differences(rendered: rendered, live: live { set(&$0, container + ["image"], "evil:latest") })
                == ["spec.template.spec.containers[name=otel-collector].image"])
        #expect(LiveObjectDrift.differences(rendered: rendered, live: live { set(&$0, ["metadata", "labels"], [:]) })
                == ["metadata.labels.app.kubernetes.io/managed-by"])
        #expect(LiveObjectDrift.differences(rendered: rendered, live: live { set(&$0, container + ["env", 1, "value"], "3") })
                == ["spec.template.spec.containers[name=otel-collector].env[name=B].value"])
        #expect(LiveObjectDrift.differences(rendered: rendered, live: live { set(&$0, container + ["args", 1], "--debug") })
                == ["spec.template.spec.containers[name=otel-collector].args"], "args is an atomic list: an added argument is drift")
        #expect(LiveObjectDrift.differences(rendered: rendered, live: live { set(&$0, ["spec", "template", "spec", "volumes"], []) })
                == ["spec.template.spec.volumes[name=config]"])
    }

    @Test("a sidecar another writer injected, first or last, is no drift; maestro's container gone is")
    func sidecars() {
        let sidecar: Value = ["name": "istio-proxy", "image": "istio/proxyv2"]
        let injectedFirst = live { object in
            var containers = object["spec"]?["template"]?["spec"]?["containers"]?.listValue ?? []
            containers.insert(sidecar, at: 0)
            set(&object, ["spec", "template", "spec", "containers"], .list(containers))
        }
        #expect(LiveObjectDrift.differences(rendered: rendered, live: injectedFirst).isEmpty)
        #expect(ObjectDiff.lines(desired: [rendered], live: [injectedFirst]).allSatisfy { !$0.contains("otel/opentelemetry") },
                "maestro diff pairs containers by name: only the sidecar shows")
        let replaced = live { set(&$0, ["spec", "template", "spec", "containers"], .list([sidecar])) }
        #expect(LiveObjectDrift.differences(rendered: rendered, live: replaced) == ["spec.template.spec.containers[name=otel-collector]"])
    }

    @Test("numbers compare as numbers; an object that is not there at all differs everywhere maestro renders")
    func numbersAndAbsence() {
        var asFloat = rendered
        set(&asFloat, container + ["ports", 0, "containerPort"], .double(8888))
        #expect(LiveObjectDrift.differences(rendered: asFloat, live: live()).isEmpty)
        #expect(!LiveObjectDrift.differences(rendered: rendered, live: ["kind": "Deployment"]).isEmpty)
    }

    @Test("a Secret's values are not compared (maestro does not keep them); its other fields are")
    func secrets() {
        let secret: Value = ["apiVersion": "v1", "kind": "Secret", "metadata": ["name": "otel-s1", "labels": ["a": "b"]],
                             "stringData": ["token": "hunter2"]]
        let liveSecret: Value = ["apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                 "metadata": ["name": "otel-s1", "labels": ["a": "b"], "resourceVersion": "9"]]
        #expect(LiveObjectDrift.differences(rendered: secret, live: liveSecret).isEmpty)
        var relabelled = liveSecret
        set(&relabelled, ["metadata", "labels", "a"], "c")
        #expect(LiveObjectDrift.differences(rendered: secret, live: relabelled) == ["metadata.labels.a"])
    }
}
