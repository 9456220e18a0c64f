"""The fidelity suite of kube_api_double.py: each behaviour a real kube-apiserver has and maestro depends on,
checked against the double with kubectl and with direct HTTP requests. One double serves the whole suite;
each test works in its own namespace. Run by Tests/MaestroPluginHostTests/KubeAPIDoubleFidelityTests.swift
(inside scripts/test) and on its own: python3 Tests/Support/kube_api_double_fidelity.py [-k pattern].

Expected values come from the Kubernetes API conventions and kube-apiserver's documented behaviour, not
from the double.
"""
import base64
import http.client
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLE = None
PORT = None
KUBECONFIG = None
NAMESPACES = itertools.count(1)


def setUpModule():
    global DOUBLE, PORT, KUBECONFIG
    DOUBLE = subprocess.Popen([sys.executable, os.path.join(HERE, "kube_api_double.py")],
                              stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    PORT = int(DOUBLE.stdout.readline().split()[1])
    directory = tempfile.mkdtemp(prefix="double-fidelity-")
    KUBECONFIG = os.path.join(directory, "kubeconfig")
    with open(KUBECONFIG, "w") as file:
        file.write(f"""apiVersion: v1
kind: Config
clusters:
- name: double
  cluster:
    server: http://127.0.0.1:{PORT}
users:
- name: admin
  user:
    token: admin-token
contexts:
- name: test
  context: {{cluster: double, user: admin}}
current-context: test
""")


def tearDownModule():
    DOUBLE.kill()
    DOUBLE.wait()
    shutil.rmtree(os.path.dirname(KUBECONFIG), ignore_errors=True)


def call(method, path, body=None, content_type="application/json", token="admin-token", accept="application/json", headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    payload = None if body is None else (body if isinstance(body, str) else json.dumps(body))
    sent = {"Accept": accept, "Authorization": f"Bearer {token}", **(headers or {})}
    if payload is not None:
        sent["Content-Type"] = content_type
    connection.request(method, path, body=payload, headers=sent)
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


def control(path, body=None):
    return call("POST", "/_double/" + path, body or {})[1]


def apply(path, obj, manager="maestro", force=False, dry_run=False):
    query = f"?fieldManager={manager}" + ("&force=true" if force else "") + ("&dryRun=All" if dry_run else "")
    return call("PATCH", path + query, json.dumps(obj), "application/apply-patch+yaml")


def kubectl(*arguments, stdin=None):
    result = subprocess.run(["kubectl", "--kubeconfig", KUBECONFIG] + list(arguments), input=stdin, capture_output=True,
                            text=True, timeout=30)
    return result.returncode, result.stdout + result.stderr


def eventually(condition, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # polls gently: the suite runs beside every other suite on two cores
    return condition()


def new_namespace():
    name = f"fidelity-{next(NAMESPACES)}"
    status, _ = call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert status == 201, status
    return name


def deployment(name, image="otel/opentelemetry-collector-contrib:0.139.0", replicas=None, labels=None):
    spec = {"selector": {"matchLabels": {"app.kubernetes.io/instance": name}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/instance": name}},
                         "spec": {"containers": [{"name": "otel-collector", "image": image, "ports": [{"containerPort": 4317}]}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels or {"app.kubernetes.io/managed-by": "maestro"}}, "spec": spec}


def managers(obj):
    return {(e["manager"], e["operation"], e.get("subresource", "")): e["fieldsV1"] for e in obj["metadata"].get("managedFields", [])}


class KubectlTests(unittest.TestCase):
    def test_client_side_apply_get_diff_delete(self):
        namespace = new_namespace()
        manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace},
                               "data": {"level": "info"}})
        code, output = kubectl("apply", "--validate=false", "-f", "-", stdin=manifest)
        self.assertEqual(code, 0, output)
        self.assertIn("configmap/settings created", output)
        code, output = kubectl("apply", "--validate=false", "-f", "-", stdin=manifest)
        self.assertIn("configmap/settings unchanged", output)
        code, output = kubectl("diff", "-f", "-", stdin=manifest)
        self.assertEqual(code, 0, f"no difference: {output}")
        changed = manifest.replace('"info"', '"debug"')
        code, output = kubectl("diff", "-f", "-", stdin=changed)
        self.assertEqual(code, 1, output)
        self.assertIn("+  level: debug", output)
        self.assertEqual(call("GET", f"/api/v1/namespaces/{namespace}/configmaps/settings")[1]["data"], {"level": "info"},
                         "diff is a dry run: nothing changed")
        code, output = kubectl("apply", "--validate=false", "-f", "-", stdin=changed)
        self.assertIn("configmap/settings configured", output)
        code, output = kubectl("get", "configmap", "settings", "-n", namespace, "-o", "jsonpath={.data.level}")
        self.assertEqual(output, "debug")
        code, output = kubectl("delete", "configmap", "settings", "-n", namespace)
        self.assertEqual(code, 0, output)
        code, output = kubectl("get", "configmap", "settings", "-n", namespace)
        self.assertNotEqual(code, 0)
        self.assertIn("NotFound", output)

    def test_server_side_apply_conflict_without_and_with_force(self):
        namespace = new_namespace()
        manifest = deployment("web", replicas=2)
        manifest["metadata"]["namespace"] = namespace
        code, output = kubectl("apply", "--server-side", "--validate=false", "-f", "-", stdin=json.dumps(manifest))
        self.assertEqual(code, 0, output)
        self.assertIn("deployment.apps/web serverside-applied", output)
        manifest["spec"]["replicas"] = 3
        code, output = kubectl("apply", "--server-side", "--field-manager", "other", "--validate=false", "-f", "-", stdin=json.dumps(manifest))
        self.assertNotEqual(code, 0, output)
        self.assertIn("conflict", output)
        self.assertIn('"kubectl"', output)
        self.assertIn(".spec.replicas", output)
        code, output = kubectl("apply", "--server-side", "--field-manager", "other", "--force-conflicts", "--validate=false", "-f", "-",
                               stdin=json.dumps(manifest))
        self.assertEqual(code, 0, output)
        live = call("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/web")[1]
        self.assertEqual(live["spec"]["replicas"], 3)
        fields = managers(live)
        self.assertIn("f:replicas", fields[("other", "Apply", "")]["f:spec"])
        self.assertNotIn("f:replicas", fields[("kubectl", "Apply", "")]["f:spec"], "the forced field changed hands")


class ServerSideApplyTests(unittest.TestCase):
    def test_managed_fields_conflicts_shared_and_removed_fields(self):
        namespace = new_namespace()
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/otel"
        config = deployment("otel")
        config["metadata"]["annotations"] = {"maestro.orb.community/sink-id": "s1", "obsolete": "yes"}
        status, live = apply(path, config)
        self.assertEqual(status, 201, live)
        entry = live["metadata"]["managedFields"][0]
        self.assertEqual((entry["manager"], entry["operation"], entry["fieldsType"]), ("maestro", "Apply", "FieldsV1"))
        containers = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
        self.assertIn('k:{"name":"otel-collector"}', containers)
        self.assertIn("f:image", containers['k:{"name":"otel-collector"}'])
        self.assertNotIn("f:replicas", entry["fieldsV1"]["f:spec"], "a defaulted field belongs to no manager")
        # Another manager's field (an HPA's replicas, a sidecar injector's label) is kept by the next apply.
        status, live = call("PATCH", path + "?fieldManager=hpa", {"spec": {"replicas": 4}, "metadata": {"labels": {"injected": "true"}}},
                            "application/merge-patch+json")
        self.assertEqual(status, 200, live)
        self.assertEqual(live["metadata"]["generation"], 2)
        # A manager that stops setting a field removes it; an unchanged apply keeps the resourceVersion.
        del config["metadata"]["annotations"]["obsolete"]
        status, live = apply(path, config)
        self.assertEqual(status, 200, live)
        self.assertEqual(live["spec"]["replicas"], 4)
        self.assertEqual(live["metadata"]["labels"].get("injected"), "true")
        self.assertNotIn("obsolete", live["metadata"]["annotations"])
        self.assertIn(("hpa", "Update", ""), managers(live))
        # Once the controller has settled (its status writes move the resourceVersion too), an apply that
        # changes nothing keeps the resourceVersion.
        settled = eventually(lambda: (lambda d: d if d.get("status", {}).get("availableReplicas") == 4
                                      and d["status"]["observedGeneration"] == d["metadata"]["generation"] else None)(call("GET", path)[1]))
        version = settled["metadata"]["resourceVersion"]
        status, again = apply(path, config)
        self.assertEqual(again["metadata"]["resourceVersion"], version, "an apply that changes nothing is no write")
        # Setting another manager's field to another value: 409 with the field and the manager, then force.
        config["spec"]["replicas"] = 1
        status, refused = apply(path, config)
        self.assertEqual(status, 409, refused)
        self.assertEqual(refused["reason"], "Conflict")
        self.assertEqual(refused["details"]["causes"][0], {"reason": "FieldManagerConflict", "message": 'conflict with "hpa" using apps/v1',
                                                           "field": ".spec.replicas"})
        status, forced = apply(path, config, force=True)
        self.assertEqual(status, 200, forced)
        self.assertEqual(forced["spec"]["replicas"], 1)
        self.assertIn("f:replicas", managers(forced)[("maestro", "Apply", "")]["f:spec"])
        # The same value as another manager's is shared, not a conflict.
        status, shared = apply(path, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "otel", "labels": {"injected": "true"}}},
                               manager="second")
        self.assertEqual(status, 200, shared)
        # An apply without a field manager is refused, as by the API server.
        status, refused = call("PATCH", path, json.dumps(config), "application/apply-patch+yaml")
        self.assertEqual(status, 422, refused)

    def test_a_removed_container_goes_and_another_managers_container_stays(self):
        namespace = new_namespace()
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/two"
        config = deployment("two")
        config["spec"]["template"]["spec"]["containers"].append({"name": "helper", "image": "busybox:1.36"})
        self.assertEqual(apply(path, config)[0], 201)
        sidecar = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "two"},
                   "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy:1.30"}]}}}}
        self.assertEqual(apply(path, sidecar, manager="injector")[0], 200)
        del config["spec"]["template"]["spec"]["containers"][1]
        status, live = apply(path, config)
        names = [c["name"] for c in live["spec"]["template"]["spec"]["containers"]]
        self.assertEqual(sorted(names), ["otel-collector", "sidecar"])


class DefaultingTests(unittest.TestCase):
    def test_deployment_service_secret_defaults(self):
        namespace = new_namespace()
        status, live = apply(f"/apis/apps/v1/namespaces/{namespace}/deployments/d", deployment("d"))
        spec = live["spec"]
        self.assertEqual(spec["replicas"], 1)
        self.assertEqual(spec["strategy"], {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        self.assertEqual((spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]), (10, 600))
        pod = spec["template"]["spec"]
        self.assertEqual((pod["restartPolicy"], pod["dnsPolicy"], pod["terminationGracePeriodSeconds"], pod["schedulerName"]),
                         ("Always", "ClusterFirst", 30, "default-scheduler"))
        container = pod["containers"][0]
        self.assertEqual((container["imagePullPolicy"], container["terminationMessagePath"], container["ports"][0]["protocol"]),
                         ("IfNotPresent", "/dev/termination-log", "TCP"))
        self.assertNotIn("status", live, "a new Deployment has no status until its controller writes one")
        status, service = apply(f"/api/v1/namespaces/{namespace}/services/s",
                                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                                 "spec": {"selector": {"app": "s"}, "ports": [{"name": "otlp", "port": 4317}]}})
        self.assertEqual(status, 201, service)
        spec = service["spec"]
        self.assertRegex(spec["clusterIP"], r"^10\.96\.\d+\.\d+$")
        self.assertEqual(spec["clusterIPs"], [spec["clusterIP"]])
        self.assertEqual((spec["type"], spec["sessionAffinity"], spec["ipFamilies"], spec["ipFamilyPolicy"], spec["internalTrafficPolicy"]),
                         ("ClusterIP", "None", ["IPv4"], "SingleStack", "Cluster"))
        self.assertEqual(spec["ports"][0], {"name": "otlp", "port": 4317, "protocol": "TCP", "targetPort": 4317})
        status, changed = call("PUT", f"/api/v1/namespaces/{namespace}/services/s",
                               {**service, "spec": {**spec, "clusterIP": "10.96.200.200", "clusterIPs": ["10.96.200.200"]}})
        self.assertEqual(status, 422, "clusterIP is immutable")
        status, secret = call("POST", f"/api/v1/namespaces/{namespace}/secrets",
                              {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"}, "stringData": {"password": "p"}})
        self.assertEqual((secret["type"], secret["data"]), ("Opaque", {"password": base64.b64encode(b"p").decode()}))
        self.assertNotIn("stringData", secret)
        self.assertNotIn("generation", secret["metadata"], "a Secret has no generation")


class ControllerTests(unittest.TestCase):
    def deployment_path(self, namespace, name):
        return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"

    def pods(self, namespace, name):
        return call("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=app.kubernetes.io/instance%3D{name}")[1]["items"]

    def test_status_is_a_later_write_of_its_own(self):
        namespace = new_namespace()
        path = self.deployment_path(namespace, "ctl")
        status, created = apply(path, deployment("ctl", replicas=2))
        self.assertNotIn("status", created)
        live = eventually(lambda: (lambda d: d if d.get("status", {}).get("availableReplicas") == 2 else None)(call("GET", path)[1]))
        self.assertTrue(live, "the controller made the Deployment available")
        self.assertGreater(int(live["metadata"]["resourceVersion"]), int(created["metadata"]["resourceVersion"]))
        self.assertEqual(live["status"]["observedGeneration"], 1)
        self.assertIn(("kube-controller-manager", "Update", "status"), managers(live))
        conditions = {c["type"]: c for c in live["status"]["conditions"]}
        self.assertEqual((conditions["Available"]["status"], conditions["Progressing"]["reason"]), ("True", "NewReplicaSetAvailable"))
        pods = self.pods(namespace, "ctl")
        self.assertEqual(len(pods), 2)
        self.assertTrue(all(p["status"]["phase"] == "Running" for p in pods))
        self.assertEqual(pods[0]["metadata"]["ownerReferences"][0]["uid"], live["metadata"]["uid"])
        # A new template: generation moves first, observedGeneration follows later; old pods are replaced.
        changed = deployment("ctl", image="otel/opentelemetry-collector-contrib:0.140.0", replicas=1)
        status, updated = apply(path, changed)
        self.assertEqual((updated["metadata"]["generation"], updated["status"]["observedGeneration"]), (2, 1))
        settled = eventually(lambda: (lambda d: d if d["status"].get("observedGeneration") == 2
                                      and d["status"].get("updatedReplicas") == 1 and d["status"].get("replicas") == 1
                                      and d["status"].get("availableReplicas") == 1 else None)(call("GET", path)[1]))
        self.assertTrue(settled, call("GET", path)[1].get("status"))
        pods = eventually(lambda: (lambda p: p if len(p) == 1 else None)(self.pods(namespace, "ctl")))
        self.assertEqual(pods[0]["spec"]["containers"][0]["image"], "otel/opentelemetry-collector-contrib:0.140.0")
        # Deleting the Deployment collects its pods (owner references).
        self.assertEqual(call("DELETE", path)[0], 200)
        self.assertTrue(eventually(lambda: self.pods(namespace, "ctl") == []))

    def test_pods_carry_the_template_metadata_and_the_new_replica_sets_hash(self):
        namespace = new_namespace()
        path = self.deployment_path(namespace, "meta")
        annotated = deployment("meta")
        annotated["spec"]["template"]["metadata"]["annotations"] = {"maestro.orb.community/config-hash": "h1"}
        apply(path, annotated)
        live = eventually(lambda: (lambda d: d if d.get("status", {}).get("availableReplicas") == 1 else None)(call("GET", path)[1]))
        self.assertTrue(live)
        pods = self.pods(namespace, "meta")
        self.assertEqual(pods[0]["metadata"]["annotations"], {"maestro.orb.community/config-hash": "h1"})
        self.assertEqual(pods[0]["metadata"]["labels"]["app.kubernetes.io/instance"], "meta")
        # The Progressing condition names the new ReplicaSet, <deployment>-<pod-template-hash>.
        progressing = [c for c in live["status"]["conditions"] if c["type"] == "Progressing"][0]
        self.assertIn(f'"meta-{pods[0]["metadata"]["labels"]["pod-template-hash"]}"', progressing["message"])

    def test_failing_rollouts(self):
        namespace = new_namespace()
        cases = {
            "CrashLoopBackOff": ("waiting", "CrashLoopBackOff", "Error", "BackOff"),
            "OOMKilled": ("waiting", "CrashLoopBackOff", "OOMKilled", "BackOff"),
            "ImagePullBackOff": ("waiting", "ImagePullBackOff", None, "Failed"),
            "Unschedulable": (None, None, None, "FailedScheduling"),
        }
        for mode in cases:
            control("rollout", {"name": f"f-{mode.lower()}", "mode": mode})
            apply(self.deployment_path(namespace, f"f-{mode.lower()}"), deployment(f"f-{mode.lower()}"))
        for mode, (state, reason, last, event_reason) in cases.items():
            name = f"f-{mode.lower()}"

            def pod_in_state():
                pods = self.pods(namespace, name)
                if not pods:
                    return None
                statuses = pods[0]["status"].get("containerStatuses") or [{}]
                if state is None:
                    scheduled = [c for c in pods[0]["status"]["conditions"] if c["type"] == "PodScheduled"]
                    return pods[0] if scheduled and scheduled[0]["reason"] == "Unschedulable" else None
                return pods[0] if statuses[0].get("state", {}).get(state, {}).get("reason") == reason else None
            pod = eventually(pod_in_state)
            self.assertTrue(pod, f"{mode}: {self.pods(namespace, name)}")
            if last:
                self.assertEqual(pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"], last)
            live = call("GET", self.deployment_path(namespace, name))[1]
            conditions = {c["type"]: c for c in live["status"]["conditions"]}
            self.assertEqual(conditions["Available"]["status"], "False", mode)
            self.assertEqual(live["status"].get("availableReplicas", 0), 0, mode)
            events = call("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")[1]["items"]
            self.assertTrue(any(e["reason"] == event_reason and e["regarding"]["name"] == pod["metadata"]["name"] and e["type"] == "Warning"
                                for e in events), f"{mode}: {[e['reason'] for e in events]}")

    def test_replica_failure_stalled_rollout_and_progress_deadline(self):
        namespace = new_namespace()
        control("rollout", {"name": "quota", "mode": "ReplicaFailure"})
        apply(self.deployment_path(namespace, "quota"), deployment("quota"))
        failing = eventually(lambda: (lambda d: d if any(c["type"] == "ReplicaFailure" for c in d.get("status", {}).get("conditions", []))
                                      else None)(call("GET", self.deployment_path(namespace, "quota"))[1]))
        self.assertTrue(failing)
        failure = [c for c in failing["status"]["conditions"] if c["type"] == "ReplicaFailure"][0]
        self.assertEqual((failure["status"], failure["reason"]), ("True", "FailedCreate"))
        self.assertEqual(self.pods(namespace, "quota"), [])
        for mode, progressing in (("Stalled", ("True", "ReplicaSetUpdated")), ("ProgressDeadlineExceeded", ("False", "ProgressDeadlineExceeded"))):
            name = "r-" + mode.lower()
            path = self.deployment_path(namespace, name)
            apply(path, deployment(name))
            self.assertTrue(eventually(lambda: call("GET", path)[1].get("status", {}).get("availableReplicas") == 1))
            control("rollout", {"name": name, "mode": mode})
            apply(path, deployment(name, image="otel/opentelemetry-collector-contrib:9.9.9"))

            def stuck():
                live = call("GET", path)[1]
                conditions = {c["type"]: c for c in live["status"]["conditions"]}
                observed = live["status"]["observedGeneration"] == 2
                return live if observed and (conditions["Progressing"]["status"], conditions["Progressing"]["reason"]) == progressing else None
            live = eventually(stuck)
            self.assertTrue(live, f"{mode}: {call('GET', path)[1]['status']}")
            # The old pod keeps serving: available, but the updated replica is not.
            self.assertEqual((live["status"].get("availableReplicas"), live["status"].get("updatedReplicas"), live["status"].get("replicas")),
                             (1, 1, 2), mode)

    def test_a_healed_rollout_and_paused_controller(self):
        namespace = new_namespace()
        path = self.deployment_path(namespace, "heal")
        control("rollout", {"name": "heal", "mode": "CrashLoopBackOff"})
        apply(path, deployment("heal"))
        self.assertTrue(eventually(lambda: call("GET", path)[1].get("status", {}).get("unavailableReplicas") == 1))
        control("rollout", {"name": "heal", "mode": None})
        self.assertTrue(eventually(lambda: call("GET", path)[1].get("status", {}).get("availableReplicas") == 1))
        control("controller", {"paused": True})
        try:
            apply(path, deployment("heal", replicas=3))
            # The controller's turn for the write came and went: paused, it left the status alone.
            self.assertTrue(eventually(lambda: f"deployments/{namespace}/heal" not in control("stats")["pending"]))
            live = call("GET", path)[1]
            self.assertEqual((live["metadata"]["generation"], live["status"]["observedGeneration"]), (2, 1))
        finally:
            control("controller", {"paused": False})
        self.assertTrue(eventually(lambda: call("GET", path)[1]["status"].get("availableReplicas") == 3))

    def test_a_config_the_collector_cannot_run_crash_loops_the_new_pods_while_the_old_ones_serve(self):
        # A Deployment's defaults for one replica (maxSurge 25% rounds up to 1, maxUnavailable 25% rounds
        # down to 0): the old pod serves until a new one is ready; a container reads its mounted config when
        # it starts, so a pod that started with a config it cannot run keeps crashing.
        namespace = new_namespace()
        path = self.deployment_path(namespace, "cfg")
        secret_path = f"/api/v1/namespaces/{namespace}/secrets/cfg"

        def with_config(text, revision):
            body = deployment("cfg")
            body["spec"]["template"]["metadata"]["annotations"] = {"revision": revision}
            body["spec"]["template"]["spec"]["volumes"] = [{"name": "config", "secret": {"secretName": "cfg"}}]
            apply(secret_path, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cfg"},
                                "data": {"config.yaml": base64.b64encode(text.encode()).decode()}})
            apply(path, body)

        control("controller", {"crash_when_config_contains": "cannot-run", "surge": True})
        try:
            with_config("receivers: {}", "1")
            first = eventually(lambda: (lambda p: p if len(p) == 1 and p[0]["status"]["phase"] == "Running"
                                        and p[0]["status"]["containerStatuses"][0]["ready"] else None)(self.pods(namespace, "cfg")))
            self.assertTrue(first)
            with_config("receivers: {cannot-run: {}}", "2")

            def crashing_beside_the_old():
                pods = {p["metadata"]["name"]: p for p in self.pods(namespace, "cfg")}
                new = [p for n, p in pods.items() if n != first[0]["metadata"]["name"]]
                waiting = [p["status"]["containerStatuses"][0].get("state", {}).get("waiting", {}).get("reason") for p in new]
                return first[0]["metadata"]["name"] in pods and waiting == ["CrashLoopBackOff"]
            self.assertTrue(eventually(crashing_beside_the_old), self.pods(namespace, "cfg"))
            self.assertEqual(call("GET", path)[1]["status"].get("availableReplicas"), 1, "the old pod still serves")
            # Back to the first template and config: the old pod is current again, the crashing one goes.
            with_config("receivers: {}", "1")
            self.assertTrue(eventually(lambda: [p["metadata"]["name"] for p in self.pods(namespace, "cfg")] == [first[0]["metadata"]["name"]]))
        finally:
            control("controller", {"crash_when_config_contains": "", "surge": False})


class ListWatchTests(unittest.TestCase):
    def make_config_maps(self, namespace, count):
        for index in range(count):
            labels = {"tier": ["web", "db", "cache"][index % 3]}
            if index % 2:
                labels["canary"] = "true"
            call("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{index:02d}", "labels": labels}})

    def names(self, path):
        status, body = call("GET", path)
        self.assertEqual(status, 200, body)
        return [i["metadata"]["name"] for i in body["items"]]

    def test_paging_is_a_consistent_snapshot(self):
        namespace = new_namespace()
        self.make_config_maps(namespace, 7)
        base = f"/api/v1/namespaces/{namespace}/configmaps"
        status, first = call("GET", base + "?limit=3")
        self.assertEqual(len(first["items"]), 3)
        self.assertEqual(first["metadata"]["remainingItemCount"], 4)
        call("POST", base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-zz-late"}})
        names = [i["metadata"]["name"] for i in first["items"]]
        token = first["metadata"]["continue"]
        while token:
            status, page = call("GET", base + f"?limit=3&continue={token}")
            self.assertEqual(page["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"])
            names += [i["metadata"]["name"] for i in page["items"]]
            token = page["metadata"].get("continue")
        self.assertEqual(names, [f"cm-{i:02d}" for i in range(7)], "the pages are the list as of the first page")
        status, first = call("GET", base + "?limit=2")
        control("compact")
        status, expired = call("GET", base + f"?limit=2&continue={first['metadata']['continue']}")
        self.assertEqual((status, expired["reason"]), (410, "Expired"))

    def test_set_based_selectors(self):
        namespace = new_namespace()
        self.make_config_maps(namespace, 6)
        base = f"/api/v1/namespaces/{namespace}/configmaps?labelSelector="
        self.assertEqual(self.names(base + "tier%20in%20(web,db)"), ["cm-00", "cm-01", "cm-03", "cm-04"])
        self.assertEqual(self.names(base + "tier%20notin%20(web,db)"), ["cm-02", "cm-05"])
        self.assertEqual(self.names(base + "canary"), ["cm-01", "cm-03", "cm-05"])
        self.assertEqual(self.names(base + "!canary,tier!=web"), ["cm-02", "cm-04"])
        self.assertEqual(self.names(base + "tier=db,canary"), ["cm-01"])
        self.assertEqual(call("GET", base + "tier%20in%20web")[0], 400)

    def test_metadata_only(self):
        namespace = new_namespace()
        call("POST", f"/api/v1/namespaces/{namespace}/secrets",
             {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "credentials"}, "stringData": {"password": "hunter2"}})
        accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
        status, listed = call("GET", f"/api/v1/namespaces/{namespace}/secrets", accept=accept)
        self.assertEqual((listed["kind"], listed["apiVersion"]), ("PartialObjectMetadataList", "meta.k8s.io/v1"))
        self.assertEqual(listed["items"][0]["kind"], "PartialObjectMetadata")
        self.assertNotIn("data", listed["items"][0])
        self.assertNotIn("hunter2", json.dumps(listed))
        status, one = call("GET", f"/api/v1/namespaces/{namespace}/secrets/credentials",
                           accept="application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
        self.assertEqual((one["kind"], one["metadata"]["name"]), ("PartialObjectMetadata", "credentials"))
        self.assertNotIn("data", one)

    def watch(self, path, stop_after=None):
        """The events of a watch, until the server ends it (its timeoutSeconds) or stop_after events came."""
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        connection.request("GET", path, headers={"Authorization": "Bearer admin-token"})
        response = connection.getresponse()
        events = []
        while stop_after is None or len(events) < stop_after:
            line = response.readline()
            if not line:
                break
            if line.strip():
                events.append(json.loads(line))
        connection.close()
        return events

    def test_watch_bookmarks_events_and_410(self):
        namespace = new_namespace()
        base = f"/api/v1/namespaces/{namespace}/configmaps"
        status, listed = call("GET", base)
        since = listed["metadata"]["resourceVersion"]
        control("controller", {"bookmark_seconds": 0.1})
        try:
            def later():
                call("POST", base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"tier": "web"}}})
                call("POST", base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "labels": {"tier": "db"}}})
            writer = threading.Thread(target=later)
            writer.start()
            events = self.watch(base + f"?watch=true&resourceVersion={since}&allowWatchBookmarks=true&labelSelector=tier%20in%20(web)"
                                       "&timeoutSeconds=0.5")
            writer.join()
        finally:
            control("controller", {"bookmark_seconds": 5.0})
        kinds = [e["type"] for e in events]
        self.assertIn("ADDED", kinds)
        self.assertEqual([e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"], ["a"])
        bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
        self.assertTrue(bookmarks, kinds)
        self.assertEqual(set(bookmarks[0]["object"]["metadata"]), {"resourceVersion"})
        # Replaying from the list's version: what happened since, in order; after a compaction, 410 Gone.
        replay = self.watch(base + f"?watch=true&resourceVersion={since}&timeoutSeconds=5", stop_after=2)
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in replay], [("ADDED", "a"), ("ADDED", "b")])
        control("compact")
        gone = self.watch(base + f"?watch=true&resourceVersion={since}&timeoutSeconds=5", stop_after=1)
        self.assertEqual(gone[0]["type"], "ERROR")
        self.assertEqual((gone[0]["object"]["code"], gone[0]["object"]["reason"]), (410, "Expired"))


    def test_a_watcher_that_falls_behind_the_history_gets_410_not_a_gap(self):
        namespace = new_namespace()
        base = f"/api/v1/namespaces/{namespace}/configmaps"
        status, listed = call("GET", base)
        since = listed["metadata"]["resourceVersion"]
        control("controller", {"event_history": 5, "bookmark_seconds": 0.1})
        count = 40
        try:
            # A reader that takes nothing while the events come: the server's writes to it block once the
            # sockets' buffers are full (40 objects of 256 KiB), and the history moves on without it.
            connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            connection.request("GET", base + f"?watch=true&resourceVersion={since}&timeoutSeconds=30",
                               headers={"Authorization": "Bearer admin-token"})
            response = connection.getresponse()
            payload = "x" * 262144
            for index in range(count):
                call("POST", base, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{index}"}, "data": {"blob": payload}})
            events = []
            while not events or events[-1]["type"] != "ERROR" and len(events) < count:
                line = response.readline()
                if not line:
                    break
                if line.strip():
                    events.append(json.loads(line))
            connection.close()
        finally:
            control("controller", {"event_history": 5000, "bookmark_seconds": 5.0})
        names = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
        self.assertEqual(names, [f"c{index}" for index in range(len(names))], "the events that came came in order, with no gap")
        self.assertTrue(len(names) == count or events[-1]["type"] == "ERROR", "every event, or a 410 that makes the client list again")
        if events[-1]["type"] == "ERROR":
            self.assertEqual(events[-1]["object"]["code"], 410)

class AccessAndLifecycleTests(unittest.TestCase):
    def test_rbac_forbids_what_the_role_does_not_grant(self):
        namespace = new_namespace()
        call("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
             {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader"},
              "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})
        call("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
             {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "reader"},
              "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
              "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": namespace}]})
        control("identity", {"token": "app-token", "user": f"system:serviceaccount:{namespace}:app"})
        self.assertEqual(call("GET", f"/api/v1/namespaces/{namespace}/configmaps", token="app-token")[0], 200)
        status, refused = call("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                               {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, token="app-token")
        self.assertEqual((status, refused["reason"]), (403, "Forbidden"))
        self.assertIn(f'User "system:serviceaccount:{namespace}:app" cannot create resource "configmaps"', refused["message"])
        self.assertEqual(call("GET", f"/api/v1/namespaces/{namespace}/secrets", token="app-token")[0], 403)
        self.assertEqual(call("GET", "/api/v1/namespaces/default/configmaps", token="app-token")[0], 403, "a Role is one namespace's")
        status, refused = apply(f"/apis/apps/v1/namespaces/{namespace}/deployments/d", deployment("d"))
        self.assertEqual(status, 201, "other tokens are the cluster's admins")

    def test_finalizers_and_a_terminating_namespace(self):
        namespace = new_namespace()
        path = f"/api/v1/namespaces/{namespace}/configmaps/held"
        call("POST", f"/api/v1/namespaces/{namespace}/configmaps",
             {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
        call("POST", f"/api/v1/namespaces/{namespace}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "free"}})
        status, deleting = call("DELETE", path)
        self.assertEqual(status, 200)
        self.assertIn("deletionTimestamp", deleting["metadata"])
        self.assertEqual(call("GET", path)[0], 200, "a finalizer holds the object")
        status, space = call("DELETE", f"/api/v1/namespaces/{namespace}")
        self.assertEqual(space["status"]["phase"], "Terminating")
        status, refused = call("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                               {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}})
        self.assertEqual(status, 403)
        self.assertIn("because it is being terminated", refused["message"])
        self.assertEqual(refused["details"]["causes"][0]["reason"], "NamespaceTerminating")
        # The namespace's contents are removed, but it stays while a finalizer holds one of them.
        self.assertTrue(eventually(lambda: call("GET", f"/api/v1/namespaces/{namespace}/configmaps/free")[0] == 404))
        self.assertEqual(call("GET", f"/api/v1/namespaces/{namespace}")[1]["status"]["phase"], "Terminating")
        self.assertEqual(call("GET", path)[0], 200)
        status, released = call("PATCH", path, [{"op": "remove", "path": "/metadata/finalizers"}], "application/json-patch+json")
        self.assertEqual(status, 200, released)
        self.assertTrue(eventually(lambda: call("GET", path)[0] == 404))
        self.assertTrue(eventually(lambda: call("GET", f"/api/v1/namespaces/{namespace}")[0] == 404))

    def test_dry_run_faults_after_commit_and_latency(self):
        namespace = new_namespace()
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/dry"
        status, dry = apply(path, deployment("dry"), dry_run=True)
        self.assertEqual(status, 201)
        self.assertEqual(dry["spec"]["revisionHistoryLimit"], 10, "a dry run is defaulted")
        self.assertEqual(call("GET", path)[0], 404, "a dry run stores nothing")
        self.assertNotIn(f"deployments/{namespace}/dry", control("stats")["pending"], "a dry run gives the controller nothing to do")
        self.assertEqual(call("GET", f"/api/v1/namespaces/{namespace}/pods")[1]["items"], [])
        self.assertEqual(call("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")[1]["items"], [])
        control("faults", {"error500_after_commit": 1.0})
        try:
            status, failed = apply(path, deployment("dry"))
        finally:
            control("faults", {"error500_after_commit": 0.0})
        self.assertEqual(status, 500)
        self.assertEqual(call("GET", path)[0], 200, "the write was committed although the client saw an error")
        control("faults", {"latency_seconds": 0.2})
        try:
            started = time.time()
            call("GET", path)
            elapsed = time.time() - started
        finally:
            control("faults", {"latency_seconds": 0.0})
        self.assertGreaterEqual(elapsed, 0.2)

    def test_events_are_recorded_and_listable(self):
        namespace = new_namespace()
        apply(f"/apis/apps/v1/namespaces/{namespace}/deployments/ev", deployment("ev"))
        events = eventually(lambda: call("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")[1]["items"])
        scaled = [e for e in events if e["reason"] == "ScalingReplicaSet"]
        self.assertTrue(scaled, events)
        self.assertEqual((scaled[0]["apiVersion"], scaled[0]["kind"], scaled[0]["regarding"]["kind"], scaled[0]["type"]),
                         ("events.k8s.io/v1", "Event", "Deployment", "Normal"))
        status, posted = call("POST", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
                              {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "mine"},
                               "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Applied", "note": "n", "type": "Normal",
                               "action": "Apply", "reportingController": "maestro", "reportingInstance": "maestro-0",
                               "regarding": {"kind": "Deployment", "name": "ev", "namespace": namespace}})
        self.assertEqual(status, 201, posted)
        self.assertIn("mine", [e["metadata"]["name"] for e in call("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")[1]["items"]])


if __name__ == "__main__":
    unittest.main(verbosity=2)
