"""A small, stateful Kubernetes API server double for maestro's tests and benchmarks.

Enough of the API for maestro and for kubectl (get, apply --server-side, delete): discovery, get/list
(label and field selectors), create, update (resourceVersion conflicts), patch (merge, json, strategic
merge as merge, server-side apply), delete, dryRun, watch, the /scale subresource, pod logs, and Status
error bodies with the real reasons. A fake controller gives each Deployment one Running pod per replica
and sets its status. Faults can be injected: a share of 500s, 429s with Retry-After, connection resets,
and delays. Control endpoints live under /_double/.

The first line on stdout is "PORT <n>".
"""
import argparse
import copy
import json
import random
import re
import ssl
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

try:
    import yaml
except ImportError:  # PyYAML is installed by scripts/setup
    yaml = None

RESOURCES = {
    # (group, version, plural): (kind, namespaced, short names)
    ("", "v1", "namespaces"): ("Namespace", False, ["ns"]),
    ("", "v1", "secrets"): ("Secret", True, []),
    ("", "v1", "configmaps"): ("ConfigMap", True, ["cm"]),
    ("", "v1", "services"): ("Service", True, ["svc"]),
    ("", "v1", "pods"): ("Pod", True, ["po"]),
    ("apps", "v1", "deployments"): ("Deployment", True, ["deploy"]),
    ("coordination.k8s.io", "v1", "leases"): ("Lease", True, []),
    ("", "v1", "serviceaccounts"): ("ServiceAccount", True, ["sa"]),
    ("rbac.authorization.k8s.io", "v1", "roles"): ("Role", True, []),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"): ("RoleBinding", True, []),
    ("rbac.authorization.k8s.io", "v1", "clusterroles"): ("ClusterRole", False, []),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"): ("ClusterRoleBinding", False, []),
}
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_version(group, version):
    return f"{group}/{version}" if group else version


class Store:
    def __init__(self):
        self.lock = threading.Condition()
        self.objects = {}  # (group, plural, namespace, name) -> object
        self.version = 0
        self.events = []  # (resourceVersion, key, type, object)
        self.faults = {"error500": 0.0, "error429": 0.0, "reset": 0.0, "delay": 0.0, "delay_seconds": 2.0, "retry_after": 1}
        self.available = {}  # deployment name -> bool (default True)
        self.logs = {}  # deployment name -> text
        self.requests = {}
        # What RBAC would check for each request: (verb, apiGroup, resource[/subresource], namespace).
        self.audit = set()
        self.token = None

    def next_version(self):
        self.version += 1
        return str(self.version)

    def record(self, key, kind, obj):
        self.events.append((int(obj["metadata"]["resourceVersion"]), key, kind, copy.deepcopy(obj)))
        self.events = self.events[-5000:]
        self.lock.notify_all()


STORE = Store()


def status_body(code, reason, message, name=None, kind=None):
    details = {}
    if name is not None:
        details["name"] = name
    if kind is not None:
        details["kind"] = kind
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details, "code": code}


def merge(base, patch):
    """JSON merge patch (RFC 7386)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def matches_labels(obj, selector):
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term and term not in labels:
            return False
    return True


def matches_fields(obj, selector):
    if not selector:
        return True
    for term in selector.split(","):
        if term.startswith("metadata.name="):
            if obj["metadata"].get("name") != term.split("=", 1)[1]:
                return False
        if term.startswith("metadata.namespace="):
            if obj["metadata"].get("namespace") != term.split("=", 1)[1]:
                return False
    return True


def validate(kind, obj):
    name = obj.get("metadata", {}).get("name", "")
    if not name or len(name) > 253 or not NAME_RE.match(name):
        return f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \'-\' or \'.\''
    if kind in ("Deployment", "Service") and (len(name) > 63 or "." in name):
        return f'metadata.name: Invalid value: "{name}": a DNS-1035 label must be at most 63 characters without dots'
    if kind == "Deployment":
        spec = obj.get("spec") or {}
        if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
            return "spec.replicas: Invalid value: must be greater than or equal to 0"
        if not spec.get("selector") or not (spec.get("template") or {}).get("spec", {}).get("containers"):
            return "spec.selector and spec.template.spec.containers: Required value"
        selector = spec["selector"].get("matchLabels") or {}
        labels = spec["template"].get("metadata", {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            return "spec.template.metadata.labels: Invalid value: selector does not match template labels"
    if kind in ("Role", "ClusterRole"):
        for index, rule in enumerate(obj.get("rules") or []):
            for field in ("apiGroups", "resources", "verbs"):
                if not isinstance(rule.get(field), list) or not rule[field]:
                    return f"rules[{index}].{field}: Required value"
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        ref = obj.get("roleRef") or {}
        if ref.get("apiGroup") != "rbac.authorization.k8s.io" or ref.get("kind") not in ("Role", "ClusterRole") or not ref.get("name"):
            return "roleRef: Invalid value: needs apiGroup rbac.authorization.k8s.io, kind Role or ClusterRole, and name"
        if kind == "ClusterRoleBinding" and ref.get("kind") != "ClusterRole":
            return "roleRef.kind: Unsupported value: a ClusterRoleBinding refers to a ClusterRole"
    if kind == "Secret":
        for key, value in (obj.get("stringData") or {}).items():
            if not isinstance(value, str):
                return f"stringData[{key}]: Invalid value: must be a string"
    return None


def finish_write(group, version, plural, kind, obj, existing):
    meta = obj.setdefault("metadata", {})
    obj["apiVersion"] = api_version(group, version)
    obj["kind"] = kind
    if existing is None:
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
    else:
        for field in ("uid", "creationTimestamp"):
            meta[field] = existing["metadata"][field]
        changed = json.dumps(obj.get("spec"), sort_keys=True) != json.dumps(existing.get("spec"), sort_keys=True)
        meta["generation"] = existing["metadata"].get("generation", 1) + (1 if changed else 0)
        if "status" in existing and "status" not in obj:
            obj["status"] = existing["status"]
    meta.pop("resourceVersion", None)
    if kind == "Secret" and "stringData" in obj:
        import base64
        data = obj.setdefault("data", {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(value.encode()).decode()
    meta["resourceVersion"] = STORE.next_version()
    return obj


def same_content(a, b):
    def strip(obj):
        obj = copy.deepcopy(obj)
        obj.get("metadata", {}).pop("resourceVersion", None)
        return json.dumps(obj, sort_keys=True)
    return strip(a) == strip(b)


def controller(namespace, deployment):
    """Gives a Deployment one Running pod per replica and sets its status (called with the lock held)."""
    name = deployment["metadata"]["name"]
    spec = deployment.get("spec") or {}
    replicas = spec.get("replicas", 1)
    template = spec.get("template") or {}
    available = STORE.available.get(name, True)
    failed = STORE.available.get(name + "/failed", False)
    pod_hash = str(abs(hash(json.dumps(template, sort_keys=True))) % 10_000_000_000)
    for key in [k for k in STORE.objects if k[1] == "pods" and k[2] == namespace and k[3].startswith(name + "-")]:
        pod = STORE.objects[key]
        if pod["metadata"].get("labels", {}).get("pod-template-hash") != pod_hash or int(key[3].rsplit("-", 1)[1]) >= replicas:
            del STORE.objects[key]
            pod["metadata"]["resourceVersion"] = STORE.next_version()
            STORE.record(key, "DELETED", pod)
    for index in range(replicas):
        pod_name = f"{name}-{pod_hash}-{index}"
        key = ("", "pods", namespace, pod_name)
        if key in STORE.objects:
            continue
        labels = dict(template.get("metadata", {}).get("labels") or {})
        labels["pod-template-hash"] = pod_hash
        pod = {"metadata": {"name": pod_name, "namespace": namespace, "labels": labels,
                            "ownerReferences": [{"kind": "Deployment", "name": name}]},
               "spec": template.get("spec", {}),
               "status": {"phase": "Running" if available else "Pending"}}
        finish_write("", "v1", "pods", "Pod", pod, None)
        STORE.objects[key] = pod
        STORE.record(key, "ADDED", pod)
    ready = replicas if available else 0
    status = {"observedGeneration": deployment["metadata"].get("generation", 1), "replicas": replicas,
              "updatedReplicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
              "conditions": [{"type": "Available", "status": "True" if available else "False"},
                             {"type": "Progressing", "status": "False" if failed else "True",
                              "reason": "ProgressDeadlineExceeded" if failed else
                              ("NewReplicaSetAvailable" if available else "ReplicaSetUpdated")}]}
    deployment["status"] = status


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle and delayed ACKs add 40 ms a request.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send_json(self, code, body, headers=None):
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def send_text(self, code, text):
        payload = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def read_raw(self):
        # Always consumed, even when unused (DELETE's options): leftovers would corrupt the kept-alive connection.
        if not hasattr(self, "_raw"):
            length = int(self.headers.get("Content-Length") or 0)
            self._raw = self.rfile.read(length) if length else b""
        return self._raw

    def body(self):
        raw = self.read_raw()
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if not raw:
            return None, content_type
        if content_type == "application/apply-patch+yaml" or content_type.endswith("yaml"):
            return yaml.safe_load(raw.decode()), content_type
        return json.loads(raw.decode()), content_type

    def handle_any(self):
        if hasattr(self, "_raw"):
            del self._raw
        self.read_raw()
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/") or "/"
        if path.startswith("/_double/"):
            return self.control(path, query)
        with STORE.lock:
            STORE.requests[self.command] = STORE.requests.get(self.command, 0) + 1
            faults = dict(STORE.faults)
            token = STORE.token
        if token is not None and not path.startswith("/version"):
            if self.headers.get("Authorization") != f"Bearer {token}" and not self.client_certificate():
                return self.send_json(401, status_body(401, "Unauthorized", "Unauthorized"))
        if self.headers.get("X-Double-Control") == "1":
            faults = {"reset": 0, "error500": 0, "error429": 0, "delay": 0}
        roll = random.random()
        if roll < faults["reset"]:
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        roll -= faults["reset"]
        if roll < faults["error500"]:
            return self.send_json(500, status_body(500, "InternalError", "injected fault"))
        roll -= faults["error500"]
        if roll < faults["error429"]:
            return self.send_json(429, status_body(429, "TooManyRequests", "injected throttling"),
                                  {"Retry-After": str(faults["retry_after"])})
        roll -= faults["error429"]
        if roll < faults["delay"]:
            time.sleep(faults["delay_seconds"])
        try:
            return self.route(path, query)
        except (ValueError, yaml.YAMLError if yaml else ValueError) as error:
            return self.send_json(400, status_body(400, "BadRequest", f"cannot decode the body: {error}"))

    def client_certificate(self):
        return isinstance(self.connection, ssl.SSLSocket) and bool(self.connection.getpeercert())

    def control(self, path, query):
        body, _ = self.body()
        with STORE.lock:
            if path == "/_double/faults":
                STORE.faults.update(body or {})
                return self.send_json(200, STORE.faults)
            if path == "/_double/available":
                STORE.available[body["name"]] = body["available"]
                STORE.available[body["name"] + "/failed"] = body.get("failed", False)
                for key, obj in STORE.objects.items():
                    if key[1] == "deployments" and key[3] == body["name"]:
                        controller(key[2], obj)
                        obj["metadata"]["resourceVersion"] = STORE.next_version()
                return self.send_json(200, {})
            if path == "/_double/logs":
                STORE.logs[body["name"]] = body["text"]
                return self.send_json(200, {})
            if path == "/_double/stats":
                return self.send_json(200, {"requests": STORE.requests, "objects": len(STORE.objects)})
            if path == "/_double/reset-stats":
                STORE.requests = {}
                return self.send_json(200, {})
            if path == "/_double/audit":
                return self.send_json(200, {"requests": [{"verb": v, "apiGroup": g, "resource": r, "namespace": n}
                                                         for (v, g, r, n) in sorted(STORE.audit)]})
            if path == "/_double/reset-audit":
                STORE.audit = set()
                return self.send_json(200, {})
        return self.send_json(404, status_body(404, "NotFound", "no such control endpoint"))

    def discovery(self, path):
        if path == "/version":
            return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-maestro-double", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups = sorted({g for (g, _, _) in RESOURCES if g})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}} for g in groups]}
        for (group, version) in {(g, v) for (g, v, _) in RESOURCES}:
            prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
            if path == prefix:
                resources = []
                for (g, v, plural), (kind, namespaced, short) in RESOURCES.items():
                    if g == group and v == version:
                        resources.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                                          "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                                          "shortNames": short})
                        if plural == "deployments":
                            resources.append({"name": "deployments/scale", "singularName": "", "namespaced": True, "group": "autoscaling",
                                              "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
                        if plural == "pods":
                            resources.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]})
                return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api_version(group, version), "resources": resources}
        return None

    def route(self, path, query):
        if self.command == "GET":
            found = self.discovery(path)
            if found is not None:
                return self.send_json(200, found)
            if path.startswith("/openapi"):
                return self.send_json(404, status_body(404, "NotFound", "no OpenAPI document; use --validate=false"))
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return self.send_json(404, status_body(404, "NotFound", f"the server could not find the requested resource {path}"))
        namespace = None
        if len(rest) >= 2 and rest[0] == "namespaces" and (group, version, rest[2] if len(rest) > 2 else "") in RESOURCES:
            namespace, rest = rest[1], rest[2:]
        if not rest or (group, version, rest[0]) not in RESOURCES:
            return self.send_json(404, status_body(404, "NotFound", f"the server could not find the requested resource {path}"))
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        kind, namespaced, _ = RESOURCES[(group, version, plural)]
        if not namespaced:
            namespace = ""
        return self.resource(group, version, plural, kind, namespaced, namespace, name, sub, query)

    def audit(self, group, plural, namespace, name, sub, query):
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        if self.command == "GET":
            verb = "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list")
        else:
            verb = verbs.get(self.command, self.command.lower())
        resource = plural + ("/" + sub if sub else "")
        with STORE.lock:
            STORE.audit.add((verb, group, resource, namespace or ""))
            # Server-side apply of an object that does not exist yet is also checked for create.
            if verb == "patch" and (self.headers.get("Content-Type") or "").startswith("application/apply-patch+yaml") \
                    and (group, plural, namespace, name) not in STORE.objects:
                STORE.audit.add(("create", group, resource, namespace or ""))

    def resource(self, group, version, plural, kind, namespaced, namespace, name, sub, query):
        dry_run = query.get("dryRun") == "All"
        key = (group, plural, namespace, name)
        self.audit(group, plural, namespace, name, sub, query)
        if self.command == "GET" and name is None:
            if query.get("watch") in ("true", "1"):
                return self.watch(group, plural, namespace, query)
            with STORE.lock:
                items = [copy.deepcopy(o) for k, o in sorted(STORE.objects.items())
                         if k[0] == group and k[1] == plural and (namespace is None or k[2] == namespace)
                         and matches_labels(o, query.get("labelSelector")) and matches_fields(o, query.get("fieldSelector"))]
                version_now = str(STORE.version)
            return self.send_json(200, {"kind": kind + "List", "apiVersion": api_version(group, version),
                                        "metadata": {"resourceVersion": version_now}, "items": items})
        if self.command == "POST" and name is None:
            obj, _ = self.body()
            if not isinstance(obj, dict):
                return self.send_json(400, status_body(400, "BadRequest", "the body must be an object"))
            name = obj.get("metadata", {}).get("name", "")
            return self.write(group, version, plural, kind, namespace, name, obj, create_only=True, dry_run=dry_run)
        if name is None:
            return self.send_json(405, status_body(405, "MethodNotAllowed", "method not allowed"))
        if sub == "log" and plural == "pods":
            with STORE.lock:
                pod = STORE.objects.get(("", "pods", namespace, name))
                owner = (pod or {}).get("metadata", {}).get("ownerReferences", [{}])[0].get("name")
                text = STORE.logs.get(owner, "")
            if pod is None:
                return self.send_json(404, status_body(404, "NotFound", f'pods "{name}" not found', name, "pods"))
            return self.send_text(200, text)
        if sub == "scale" and plural == "deployments":
            return self.scale(key, namespace, name)
        if self.command == "GET":
            with STORE.lock:
                obj = copy.deepcopy(STORE.objects.get(key))
            if obj is None:
                return self.send_json(404, status_body(404, "NotFound", f'{plural} "{name}" not found', name, plural))
            return self.send_json(200, obj)
        if self.command == "PUT":
            obj, _ = self.body()
            return self.write(group, version, plural, kind, namespace, name, obj, update_only=True, dry_run=dry_run)
        if self.command == "PATCH":
            patch, content_type = self.body()
            with STORE.lock:
                existing = copy.deepcopy(STORE.objects.get(key))
            if content_type == "application/apply-patch+yaml":
                if existing is None:
                    merged = patch
                else:
                    # The field manager owns what it applies: spec, data, labels and annotations are replaced,
                    # server-set metadata and status stay.
                    merged = copy.deepcopy(patch)
                    merged.setdefault("metadata", {})
                    if "status" in existing:
                        merged["status"] = existing["status"]
                return self.write(group, version, plural, kind, namespace, name, merged, dry_run=dry_run, existing_hint=existing)
            if existing is None:
                return self.send_json(404, status_body(404, "NotFound", f'{plural} "{name}" not found', name, plural))
            if content_type == "application/json-patch+json":
                merged = existing
                for op in patch:
                    target = op["path"].strip("/").split("/")
                    node = merged
                    for part in target[:-1]:
                        node = node.setdefault(part, {})
                    if op["op"] in ("add", "replace"):
                        node[target[-1]] = op["value"]
                    elif op["op"] == "remove":
                        node.pop(target[-1], None)
            else:
                merged = merge(existing, patch)
            return self.write(group, version, plural, kind, namespace, name, merged, dry_run=dry_run)
        if self.command == "DELETE":
            with STORE.lock:
                obj = STORE.objects.get(key)
                if obj is None:
                    return self.send_json(404, status_body(404, "NotFound", f'{plural} "{name}" not found', name, plural))
                if not dry_run:
                    del STORE.objects[key]
                    obj["metadata"]["resourceVersion"] = STORE.next_version()
                    STORE.record(key, "DELETED", obj)
                    if plural == "deployments":
                        for pod_key in [k for k in STORE.objects if k[1] == "pods" and k[2] == namespace and k[3].startswith(name + "-")]:
                            pod = STORE.objects.pop(pod_key)
                            STORE.record(pod_key, "DELETED", pod)
                    if plural == "namespaces":
                        for inner in [k for k in STORE.objects if k[2] == name]:
                            del STORE.objects[inner]
            return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                        "details": {"name": name, "kind": plural, "uid": obj["metadata"]["uid"]}})
        return self.send_json(405, status_body(405, "MethodNotAllowed", "method not allowed"))

    def write(self, group, version, plural, kind, namespace, name, obj, create_only=False, update_only=False, dry_run=False,
              existing_hint=None):
        if not isinstance(obj, dict):
            return self.send_json(400, status_body(400, "BadRequest", "the body must be an object"))
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("name", name)
        if namespace:
            meta["namespace"] = namespace
        if meta.get("name") != name:
            return self.send_json(400, status_body(400, "BadRequest", "the name of the object does not match the name in the URL"))
        problem = validate(kind, obj)
        if problem:
            return self.send_json(422, status_body(422, "Invalid", f'{kind} "{name}" is invalid: {problem}', name, kind))
        key = (group, plural, namespace, name)
        with STORE.lock:
            if namespace and ("", "namespaces", "", namespace) not in STORE.objects:
                return self.send_json(404, status_body(404, "NotFound", f'namespaces "{namespace}" not found', namespace, "namespaces"))
            existing = STORE.objects.get(key)
            if create_only and existing is not None:
                return self.send_json(409, status_body(409, "AlreadyExists", f'{plural} "{name}" already exists', name, plural))
            if update_only:
                if existing is None:
                    return self.send_json(404, status_body(404, "NotFound", f'{plural} "{name}" not found', name, plural))
                sent = obj["metadata"].get("resourceVersion")
                if sent and sent != existing["metadata"]["resourceVersion"]:
                    return self.send_json(409, status_body(409, "Conflict",
                                                           f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified', name, plural))
            created = existing is None
            obj = finish_write(group, version, plural, kind, obj, existing)
            if plural == "deployments":
                controller(namespace, obj)
            if dry_run:
                return self.send_json(201 if created else 200, obj)
            if not created and same_content(obj, existing):
                # As the API server: a write that changes nothing keeps the resourceVersion and sends no event.
                return self.send_json(200, copy.deepcopy(existing))
            STORE.objects[key] = obj
            STORE.record(key, "ADDED" if created else "MODIFIED", obj)
            body = copy.deepcopy(obj)
        return self.send_json(201 if created else 200, body)

    def scale(self, key, namespace, name):
        with STORE.lock:
            deployment = STORE.objects.get(key)
            if deployment is None:
                return self.send_json(404, status_body(404, "NotFound", f'deployments.apps "{name}" not found', name, "deployments"))
            if self.command in ("PUT", "PATCH"):
                body, _ = self.body()
                replicas = (body.get("spec") or {}).get("replicas", deployment["spec"].get("replicas", 1))
                deployment["spec"]["replicas"] = replicas
                deployment["metadata"]["generation"] += 1
                controller(namespace, deployment)
                deployment["metadata"]["resourceVersion"] = STORE.next_version()
                STORE.record(key, "MODIFIED", deployment)
            scale = {"kind": "Scale", "apiVersion": "autoscaling/v1",
                     "metadata": {"name": name, "namespace": namespace, "resourceVersion": deployment["metadata"]["resourceVersion"]},
                     "spec": {"replicas": deployment["spec"].get("replicas", 1)},
                     "status": {"replicas": deployment.get("status", {}).get("replicas", 0)}}
        return self.send_json(200, scale)

    def watch(self, group, plural, namespace, query):
        timeout = float(query.get("timeoutSeconds", "30"))
        start_version = int(query.get("resourceVersion") or 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def emit(kind, obj):
            line = (json.dumps({"type": kind, "object": obj}) + "\n").encode()
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        def wanted(key, obj):
            return (key[0] == group and key[1] == plural and (namespace is None or key[2] == namespace)
                    and matches_labels(obj, query.get("labelSelector")) and matches_fields(obj, query.get("fieldSelector")))

        deadline = time.time() + timeout
        with STORE.lock:
            if start_version == 0:
                initial = [(k, copy.deepcopy(o)) for k, o in STORE.objects.items() if wanted(k, o)]
                seen = STORE.version
            else:
                initial = []
                seen = start_version
        try:
            for key, obj in initial:
                emit("ADDED", obj)
            while time.time() < deadline:
                with STORE.lock:
                    STORE.lock.wait(timeout=min(1.0, max(0.0, deadline - time.time())))
                    fresh = [(v, k, t, o) for (v, k, t, o) in STORE.events if v > seen and wanted(k, o)]
                    if STORE.events:
                        seen = max(seen, STORE.events[-1][0])
                for _, _, kind, obj in fresh:
                    emit(kind, obj)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    parser.add_argument("--token")
    parser.add_argument("--namespace", action="append", default=[], help="namespaces that exist at start")
    args = parser.parse_args()
    STORE.token = args.token
    for namespace in args.namespace:
        obj = finish_write("", "v1", "namespaces", "Namespace", {"metadata": {"name": namespace}}, None)
        STORE.objects[("", "namespaces", "", namespace)] = obj
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(args.client_ca)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("PORT", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
