"""A stateful Kubernetes API server double for maestro's tests and benchmarks.

It behaves like a kube-apiserver where maestro's correctness depends on the difference (see
Tests/Support/README.md for every knob): discovery; get/list with equality- and set-based label
selectors, field selectors and paging (limit/continue); metadata-only answers (as=PartialObjectMetadata);
create, update (resourceVersion conflicts), patch (merge, json, strategic merge with list merge keys,
server-side apply with field management: managedFields per manager, 409 conflicts without force, fields a
manager stops applying removed); defaulting of Deployment, Service, Pod and Secret fields; delete with
finalizers, owner-reference garbage collection and Terminating namespaces; dryRun (no controller runs);
watch with bookmarks and 410 Gone after a compaction; the /scale subresource; pod logs; RBAC (403) for a
token bound to a service account; Events (events.k8s.io/v1). An asynchronous controller writes each
Deployment's status as its own later write and creates and removes its pods; rollouts can be made to fail
(CrashLoopBackOff, ImagePullBackOff, OOMKilled, Unschedulable, ReplicaFailure, stalled,
ProgressDeadlineExceeded). Faults can be injected before a request is served (500s, 429s with
Retry-After, connection resets, delays) and after a write committed; a fixed latency can be added to every
request. Control endpoints live under /_double/.

The first line on stdout is "PORT <n>".
"""
import argparse
import base64
import collections
import copy
import heapq
import ipaddress
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
    ("events.k8s.io", "v1", "events"): ("Event", True, ["ev"]),
    ("policy", "v1", "poddisruptionbudgets"): ("PodDisruptionBudget", True, ["pdb"]),
}
# Kinds whose status is a subresource: writes to the object itself keep the stored status.
STATUS_KINDS = {"Deployment", "Service", "Pod", "Namespace"}
# Kinds whose metadata.generation counts changes of the spec (a real server sets none on the others).
GENERATION_KINDS = {"Deployment"}
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# Fields server-side apply never gives to a manager.
UNMANAGED = {("f:apiVersion",), ("f:kind",), ("f:metadata", "f:name"), ("f:metadata", "f:namespace"),
             ("f:metadata", "f:resourceVersion"), ("f:metadata", "f:uid"), ("f:metadata", "f:managedFields"),
             ("f:metadata", "f:creationTimestamp"), ("f:metadata", "f:generation"),
             ("f:metadata", "f:deletionTimestamp"), ("f:metadata", "f:deletionGracePeriodSeconds")}
# List merge keys (strategic merge and server-side apply); other lists of objects are atomic.
LIST_KEYS = {"containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",), "env": ("name",),
             "volumes": ("name",), "volumeMounts": ("mountPath",), "imagePullSecrets": ("name",), "conditions": ("type",),
             "ownerReferences": ("uid",), "hostAliases": ("ip",)}
SET_LISTS = {"finalizers"}
# Rollouts that get stuck starting new pods (pods already ready stay so); the other modes are the pods' own.
STUCK_ROLLOUTS = {"Stalled", "ProgressDeadlineExceeded", "ReplicaFailure"}
ROLLOUT_MODES = {"CrashLoopBackOff", "ImagePullBackOff", "OOMKilled", "Unschedulable", "ReplicaFailure", "Stalled",
                 "ProgressDeadlineExceeded", "NotReady"}


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def api_version(group, version):
    return f"{group}/{version}" if group else version


class ApiError(Exception):
    def __init__(self, code, reason, message, name=None, kind=None, causes=None, group=None):
        super().__init__(message)
        self.body = status_body(code, reason, message, name, kind, causes, group)
        self.code = code


def status_body(code, reason, message, name=None, kind=None, causes=None, group=None):
    details = {}
    if name is not None:
        details["name"] = name
    if group is not None:
        details["group"] = group
    if kind is not None:
        details["kind"] = kind
    if causes:
        details["causes"] = causes
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details, "code": code}


class Store:
    def __init__(self):
        self.lock = threading.Condition()
        # (group, plural, namespace, name) -> object. A stored object is never changed in place: every write
        # stores a new one, so readers (lists, watches, the event history) share them without copies.
        self.objects = {}
        self.owned = {}  # owner uid -> keys of the objects whose ownerReferences name it
        self.fieldsets = {}  # key -> {(manager, operation, subresource): (set of field paths, time, apiVersion)}
        self.version = 0
        self.events = []  # (resourceVersion, key, type, object)
        self.compacted = 0  # watches from an older resourceVersion, and continue tokens, are answered 410
        self.snapshots = {}  # continue token id -> (resourceVersion, remaining items)
        self.faults = {"error500": 0.0, "error429": 0.0, "reset": 0.0, "delay": 0.0, "delay_seconds": 2.0, "retry_after": 1,
                       "error500_after_commit": 0.0, "reset_after_commit": 0.0, "latency_seconds": 0.0}
        self.controller = {"delay_seconds": 0.02, "pod_start_seconds": 0.02, "paused": False, "namespace_finalize_seconds": 0.05,
                           "bookmark_seconds": 5.0, "event_history": 5000, "crash_when_config_contains": "", "crash_when_image_contains": "", "surge": False}
        self.rollouts = {}  # deployment name -> rollout mode (ROLLOUT_MODES) or absent for healthy
        self.logs = {}  # deployment name -> text
        self.requests = {}
        # Every API request in arrival order (the last 100,000): method, path, User-Agent, monotonic time.
        self.request_log = collections.deque(maxlen=100_000)
        # Deployments whose rollout is in progress (pods of the current template not all ready, or old pods
        # left), and the most at once since the last reset-stats: what a fleet rollout's limit is checked on.
        self.rolling = set()
        self.max_rolling = 0
        # What RBAC would check for each request: (verb, apiGroup, resource[/subresource], namespace).
        self.audit = set()
        self.token = None
        self.identities = {}  # bearer token -> user name whose requests RBAC checks (other tokens are admins)
        self.pending = []  # heap of (due time, key) the controller reconciles
        self.pod_ready_at = {}  # pod key -> when its containers have started
        self.pod_config_modes = {}  # pod key -> the mode its mounted config gave it when its containers started (None: healthy)
        self.next_ip = 10
        self.event_series = {}  # (namespace, regarding uid, reason, note) -> the key of its Event

    def next_version(self):
        self.version += 1
        return str(self.version)

    def record(self, key, kind, obj):
        self.events.append((int(obj["metadata"]["resourceVersion"]), key, kind, obj))
        keep = int(self.controller.get("event_history", 5000))
        if len(self.events) > keep:
            dropped = self.events[:-keep]
            self.events = self.events[-keep:]
            self.compacted = max(self.compacted, dropped[-1][0])
        self.lock.notify_all()

    def compact(self):
        self.compacted = self.version
        self.events = []
        self.snapshots = {}

    def schedule(self, key, delay):
        heapq.heappush(self.pending, (time.time() + delay, key))
        self.lock.notify_all()


STORE = Store()


# ---------------------------------------------------------------- label selectors

def parse_selector(text):
    """Equality- and set-based label selector terms: [(key, operator, values)]; ValueError when malformed."""
    terms = []
    text = (text or "").strip()
    position = 0
    while position < len(text):
        match = re.compile(r"\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(==|=|!=|in(?=\s*\()|notin(?=\s*\())?\s*").match(text, position)
        if not match or not match.group(2):
            raise ValueError(f"unable to parse requirement: {text[position:]!r}")
        negated, key, operator = match.group(1), match.group(2), (match.group(3) or "").strip()
        if not LABEL_KEY_RE.match(key):
            raise ValueError(f"invalid label key {key!r}")
        position = match.end()
        if operator in ("in", "notin"):
            if negated or position >= len(text) or text[position] != "(":
                raise ValueError(f"{key} {operator}: a parenthesised set of values is required")
            close = text.index(")", position)
            values = {v.strip() for v in text[position + 1:close].split(",") if v.strip()}
            terms.append((key, operator, values))
            position = close + 1
        elif operator:
            if negated:
                raise ValueError("! goes only before a key")
            value_match = re.compile(r"([A-Za-z0-9._-]*)\s*").match(text, position)
            terms.append((key, "!=" if operator == "!=" else "=", {value_match.group(1)}))
            position = value_match.end()
        else:
            terms.append((key, "!" if negated else "exists", set()))
        rest = re.compile(r"\s*(,|$)").match(text, position)
        if not rest:
            raise ValueError(f"unable to parse requirement: {text[position:]!r}")
        position = rest.end()
    return terms


def matches_labels(obj, selector):
    labels = obj.get("metadata", {}).get("labels") or {}
    for key, operator, values in parse_selector(selector):
        present = key in labels
        if operator == "=" and labels.get(key) not in values:
            return False
        if operator == "!=" and present and labels[key] in values:
            return False
        if operator == "in" and (not present or labels[key] not in values):
            return False
        if operator == "notin" and present and labels[key] in values:
            return False
        if operator == "exists" and not present:
            return False
        if operator == "!" and present:
            return False
    return True


def matches_fields(obj, selector):
    if not selector:
        return True
    for term in selector.split(","):
        negated = "!=" in term
        field, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        node = obj
        for part in field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        actual = "" if node is None else str(node)
        if (actual == value) == negated:
            return False
    return True


# ---------------------------------------------------------------- field paths (managedFields, fieldsV1)

def list_keys(field, item):
    if not isinstance(item, dict):
        return None
    if field == "ports":
        keys = ("containerPort",) if "containerPort" in item else ("port",)
    else:
        keys = LIST_KEYS.get(field)
    if keys and all(k in item for k in keys):
        return keys
    return None


def item_element(field, item):
    keys = list_keys(field, item)
    return "k:" + json.dumps({k: item[k] for k in keys}, separators=(",", ":"), sort_keys=True)


def is_associative(field, items):
    return isinstance(items, list) and bool(items) and all(list_keys(field, item) for item in items)


def field_paths(value):
    """Every field a configuration sets that a manager can own, as paths of fieldsV1 elements (f:name,
    k:{...}, v:value). Maps are granular; lists with merge keys are granular per item (the item itself is
    owned too); other lists and scalars are leaves."""
    paths = set()
    collect_paths(value, (), None, paths)
    return {p for p in paths if p[:1] != ("f:status",) and not any(p[:len(u)] == u for u in UNMANAGED)}


def collect_paths(value, prefix, field, paths):
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            collect_paths(inner, prefix + ("f:" + key,), key, paths)
    elif isinstance(value, list) and field in SET_LISTS and value:
        for item in value:
            paths.add(prefix + ("v:" + json.dumps(item),))
    elif is_associative(field, value):
        for item in value:
            item_path = prefix + (item_element(field, item),)
            paths.add(item_path)
            for key, inner in item.items():
                collect_paths(inner, item_path + ("f:" + key,), key, paths)
    elif prefix:
        paths.add(prefix)


def lookup(obj, path):
    """(found, value) of a path of fieldsV1 elements in an object."""
    node = obj
    for element in path:
        if element.startswith("f:"):
            if not isinstance(node, dict) or element[2:] not in node:
                return False, None
            node = node[element[2:]]
        elif element.startswith("k:"):
            wanted = json.loads(element[2:])
            if not isinstance(node, list):
                return False, None
            found = [i for i in node if isinstance(i, dict) and all(i.get(k) == v for k, v in wanted.items())]
            if not found:
                return False, None
            node = found[0]
        elif element.startswith("v:"):
            wanted = json.loads(element[2:])
            if not isinstance(node, list) or wanted not in node:
                return False, None
            node = wanted
    return True, node


def remove_path(obj, path):
    """Removes the field at path; parents left empty by it go too."""
    if not path:
        return
    found, parent = lookup(obj, path[:-1])
    if not found:
        return
    element = path[-1]
    if element.startswith("f:") and isinstance(parent, dict):
        parent.pop(element[2:], None)
    elif element.startswith("k:") and isinstance(parent, list):
        wanted = json.loads(element[2:])
        parent[:] = [i for i in parent if not (isinstance(i, dict) and all(i.get(k) == v for k, v in wanted.items()))]
    elif element.startswith("v:") and isinstance(parent, list):
        wanted = json.loads(element[2:])
        parent[:] = [i for i in parent if i != wanted]
    if parent in ({}, []) and len(path) > 1:
        remove_path(obj, path[:-1])


def encode_fields(paths):
    """fieldsV1: nested maps of elements; "." marks a node owned itself that also has owned children."""
    root = {}
    for path in sorted(paths):
        node = root
        for element in path:
            node = node.setdefault(element, {})
    for path in paths:
        found = root
        for element in path:
            found = found[element]
        if found and "." not in found:
            found["."] = {}
    return root


# ---------------------------------------------------------------- merging

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


def strategic_merge(base, patch, field=None):
    """Strategic merge patch: lists with merge keys merge by key ($patch: delete removes an item),
    $setElementOrder and $retainKeys directives are understood, other lists are replaced."""
    if isinstance(patch, list):
        if is_associative(field, patch) or (patch and all(isinstance(i, dict) and i.get("$patch") == "delete" for i in patch)):
            result = copy.deepcopy(base) if isinstance(base, list) else []
            for item in patch:
                keys = list_keys(field, {k: v for k, v in item.items() if k != "$patch"})
                if keys is None:
                    continue
                index = next((n for n, i in enumerate(result) if isinstance(i, dict) and all(i.get(k) == item[k] for k in keys)), None)
                if item.get("$patch") == "delete":
                    if index is not None:
                        del result[index]
                elif index is None:
                    result.append(strategic_merge(None, item))
                else:
                    result[index] = strategic_merge(result[index], item)
            return result
        return copy.deepcopy(patch)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    result = copy.deepcopy(base) if isinstance(base, dict) else {}
    if "$retainKeys" in patch:
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [v for v in result.get(name) or [] if v not in value]
        elif key.startswith("$"):
            continue
        elif value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge(result.get(key), value, key)
    for key, order in patch.items():
        if key.startswith("$setElementOrder/") and isinstance(result.get(key.split("/", 1)[1]), list):
            name = key.split("/", 1)[1]
            keys = [tuple(sorted(o.items())) for o in order]
            items = result[name]
            ranked = lambda i: next((n for n, k in enumerate(keys) if all(i.get(a) == b for a, b in k)), len(keys))
            result[name] = sorted(items, key=ranked)
    return result


def apply_merge(live, applied, field=None):
    """The applied configuration laid over the live object: maps merge, lists with merge keys merge by
    key, everything else is replaced."""
    if isinstance(applied, dict) and isinstance(live, dict):
        result = copy.deepcopy(live)
        for key, value in applied.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = apply_merge(live.get(key), value, key)
        return result
    if is_associative(field, applied) and isinstance(live, list):
        result = copy.deepcopy(live)
        for item in applied:
            keys = list_keys(field, item)
            index = next((n for n, i in enumerate(result) if isinstance(i, dict) and all(i.get(k) == item[k] for k in keys)), None)
            if index is None:
                result.append(copy.deepcopy(item))
            else:
                result[index] = apply_merge(result[index], item)
        return result
    if field in SET_LISTS and isinstance(applied, list) and isinstance(live, list):
        return live + [v for v in applied if v not in live]
    return copy.deepcopy(applied)


# ---------------------------------------------------------------- validation and defaulting

def validate(kind, obj, existing=None):
    name = obj.get("metadata", {}).get("name", "")
    if not name or len(name) > 253 or not NAME_RE.match(name):
        return f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \'-\' or \'.\''
    if kind in ("Deployment", "Service") and (len(name) > 63 or "." in name):
        return f'metadata.name: Invalid value: "{name}": a DNS-1035 label must be at most 63 characters without dots'
    for key in (obj["metadata"].get("labels") or {}):
        if not LABEL_KEY_RE.match(key):
            return f'metadata.labels: Invalid value: "{key}": a valid label key is required'
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
        if existing is not None and existing.get("spec", {}).get("selector") != spec.get("selector"):
            return "spec.selector: Invalid value: field is immutable"
    if kind == "Service" and existing is not None:
        old_ip = existing.get("spec", {}).get("clusterIP")
        new_ip = (obj.get("spec") or {}).get("clusterIP")
        if new_ip and old_ip and new_ip != old_ip:
            return "spec.clusterIP: Invalid value: field is immutable"
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


def default_pod_spec(spec):
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        image = container.get("image", "")
        tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
        container.setdefault("imagePullPolicy", "IfNotPresent" if tagged or "@" in image else "Always")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if isinstance(container.get(probe), dict):
                p = container[probe]
                for field, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
                    p.setdefault(field, value)
                if isinstance(p.get("httpGet"), dict):
                    p["httpGet"].setdefault("scheme", "HTTP")
    for volume in spec.get("volumes") or []:
        for source in ("secret", "configMap"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)


def apply_defaults(kind, obj, existing):
    """The fields a real API server fills in when a client leaves them out."""
    spec = obj.get("spec")
    if kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        template = spec.setdefault("template", {})
        if isinstance(template.get("spec"), dict):
            default_pod_spec(template["spec"])
    if kind == "Pod" and isinstance(spec, dict):
        default_pod_spec(spec)
    if kind == "Service":
        spec = obj.setdefault("spec", {})
        old = (existing or {}).get("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        if spec["type"] != "ExternalName":
            if "clusterIP" not in spec:
                if old.get("clusterIP"):
                    spec["clusterIP"] = old["clusterIP"]
                else:
                    STORE.next_ip += 1
                    spec["clusterIP"] = str(ipaddress.ip_address("10.96.0.0") + STORE.next_ip)
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        obj.setdefault("status", {"loadBalancer": {}})
    if kind == "Secret":
        obj.setdefault("type", "Opaque")
    if kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
    if kind == "Lease":
        obj.setdefault("spec", {})


# ---------------------------------------------------------------- the store's writes

def content(obj):
    """An object as compared for "did this write change anything": without resourceVersion and the
    managers' timestamps."""
    obj = copy.deepcopy(obj)
    meta = obj.get("metadata", {})
    meta.pop("resourceVersion", None)
    for entry in meta.get("managedFields") or []:
        entry.pop("time", None)
    return json.dumps(obj, sort_keys=True)


def render_managed_fields(fieldsets, obj):
    entries = []
    for (manager, operation, subresource), (paths, stamp, version) in sorted(fieldsets.items(), key=lambda e: e[1][1]):
        if not paths:
            continue
        entry = {"manager": manager, "operation": operation, "apiVersion": version, "time": stamp, "fieldsType": "FieldsV1",
                 "fieldsV1": encode_fields(paths)}
        if subresource:
            entry["subresource"] = subresource
        entries.append(entry)
    if entries:
        obj["metadata"]["managedFields"] = entries
    else:
        obj["metadata"].pop("managedFields", None)


def take_fields(fieldsets, manager_id, paths, version, stamp, exclusive=True):
    """Gives the paths to a manager; with exclusive (an update, a forced apply) no one else keeps them."""
    if exclusive:
        for other, (owned, when, other_version) in list(fieldsets.items()):
            if other != manager_id:
                fieldsets[other] = (owned - paths, when, other_version)
    old = fieldsets.get(manager_id, (set(), stamp, version))
    fieldsets[manager_id] = (paths, stamp if paths != old[0] else old[1], version)
    for other in [m for m, (owned, _, _) in fieldsets.items() if not owned]:
        del fieldsets[other]


def changed_paths(old, new):
    """The fields an update sets or changes: they become the updating manager's."""
    old = old or {}
    return {p for p in field_paths(new) if lookup(old, p) != lookup(new, p)}


def commit(key, obj, event_type, dry_run=False):
    """Stores a write: a new resourceVersion and a watch event (nothing of it when dry_run)."""
    obj["metadata"]["resourceVersion"] = str(STORE.version + 1) if dry_run else STORE.next_version()
    if dry_run:
        return obj
    for ref in (STORE.objects.get(key) or {}).get("metadata", {}).get("ownerReferences") or []:
        STORE.owned.get(ref.get("uid"), set()).discard(key)
    if event_type != "DELETED":
        for ref in obj["metadata"].get("ownerReferences") or []:
            STORE.owned.setdefault(ref.get("uid"), set()).add(key)
    if event_type == "DELETED":
        STORE.objects.pop(key, None)
        STORE.fieldsets.pop(key, None)
        STORE.pod_ready_at.pop(key, None)
        STORE.pod_config_modes.pop(key, None)
    else:
        STORE.objects[key] = obj
    STORE.record(key, event_type, obj)
    return obj


def remove(key, dry_run=False, propagation="Background"):
    """DELETE: an object with finalizers only gets a deletionTimestamp; without, it goes, and the objects it
    owned are collected; a namespace turns Terminating and its contents are removed by the controller."""
    obj = copy.deepcopy(STORE.objects[key])
    meta = obj["metadata"]
    if key[1] == "namespaces":
        if "deletionTimestamp" not in meta:
            meta["deletionTimestamp"] = now()
            meta["deletionGracePeriodSeconds"] = 0
            obj.setdefault("status", {})["phase"] = "Terminating"
            obj = commit(key, obj, "MODIFIED", dry_run)
            if not dry_run:
                STORE.schedule(key, STORE.controller["namespace_finalize_seconds"])
        return obj
    if meta.get("finalizers"):
        if "deletionTimestamp" not in meta:
            meta["deletionTimestamp"] = now()
            meta["deletionGracePeriodSeconds"] = 0
            if obj["kind"] in GENERATION_KINDS:
                meta["generation"] = meta.get("generation", 1) + 1
            obj = commit(key, obj, "MODIFIED", dry_run)
        return obj
    obj = commit(key, obj, "DELETED", dry_run)
    if not dry_run and propagation != "Orphan":
        collect_garbage(meta["uid"], key[2])
    return obj


def collect_garbage(owner_uid, namespace):
    for key in list(STORE.owned.pop(owner_uid, ())):
        obj = STORE.objects.get(key)
        if obj is not None and key[2] == namespace \
                and not any(ref_exists(r, namespace) for r in obj["metadata"]["ownerReferences"] if r.get("uid") != owner_uid):
            remove(key)


def ref_exists(ref, namespace):
    return any(o["metadata"]["uid"] == ref.get("uid") for k, o in STORE.objects.items() if k[2] in (namespace, ""))


def write(group, version, plural, kind, namespace, name, obj, manager, operation="Update", subresource=None,
          create_only=False, update_only=False, dry_run=False, fieldsets=None):
    """Every create, update and patch ends here (the lock held). Returns (HTTP code, object)."""
    if not isinstance(obj, dict):
        raise ApiError(400, "BadRequest", "the body must be an object")
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    meta.setdefault("name", name)
    if namespace:
        meta["namespace"] = namespace
    if meta.get("name") != name:
        raise ApiError(400, "BadRequest", "the name of the object does not match the name in the URL")
    key = (group, plural, namespace, name)
    existing = STORE.objects.get(key)
    resource_name = plural if not group else f"{plural}.{group}"
    if create_only and existing is not None:
        raise ApiError(409, "AlreadyExists", f'{resource_name} "{name}" already exists', name, plural, group=group)
    if update_only:
        if existing is None:
            raise ApiError(404, "NotFound", f'{resource_name} "{name}" not found', name, plural, group=group)
        sent = meta.get("resourceVersion")
        if sent and sent != existing["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource_name} "{name}": the object has been modified; '
                                            'please apply your changes to the latest version and try again', name, plural, group=group)
    if namespace:
        space = STORE.objects.get(("", "namespaces", "", namespace))
        if space is None:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found', namespace, "namespaces")
        if existing is None and "deletionTimestamp" in space["metadata"]:
            raise ApiError(403, "Forbidden", f'{resource_name} "{name}" is forbidden: unable to create new content in namespace '
                                             f'{namespace} because it is being terminated', name, plural,
                           [{"reason": "NamespaceTerminating", "message": f"namespace {namespace} is being terminated",
                             "field": "metadata.namespace"}], group=group)
    problem = validate(kind, obj, existing)
    if problem:
        raise ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {problem}', name, kind, group=group)

    obj["apiVersion"] = api_version(group, version)
    obj["kind"] = kind
    stamp = now()
    if fieldsets is None:
        fieldsets = copy.deepcopy(STORE.fieldsets.get(key, {}))
    manager_id = (manager, operation, subresource)
    if existing is None:
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = stamp
        if kind in GENERATION_KINDS:
            meta["generation"] = 1
        if operation == "Update":
            take_fields(fieldsets, manager_id, field_paths(obj), obj["apiVersion"], stamp)
    else:
        for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if field in existing["metadata"]:
                meta[field] = existing["metadata"][field]
            else:
                meta.pop(field, None)
        if kind in STATUS_KINDS and subresource != "status":
            if "status" in existing:
                obj["status"] = copy.deepcopy(existing["status"])
            else:
                obj.pop("status", None)
        if operation == "Update":
            take_fields(fieldsets, manager_id, fieldsets.get(manager_id, (set(),))[0] | changed_paths(existing, obj), obj["apiVersion"], stamp)
    meta.pop("managedFields", None)
    meta.pop("resourceVersion", None)
    if kind == "Secret" and "stringData" in obj:
        data = obj.setdefault("data", {})
        for field, value in obj.pop("stringData").items():
            data[field] = base64.b64encode(value.encode()).decode()
    apply_defaults(kind, obj, existing)
    if kind in GENERATION_KINDS and existing is not None:
        changed = json.dumps(obj.get("spec"), sort_keys=True) != json.dumps(existing.get("spec"), sort_keys=True)
        meta["generation"] = existing["metadata"].get("generation", 1) + (1 if changed else 0)
    # Fields no one owns any more are not in anybody's set; a field that vanished is nobody's.
    for manager_key, (paths, when, field_version) in list(fieldsets.items()):
        fieldsets[manager_key] = ({p for p in paths if lookup(obj, p)[0]}, when, field_version)
    render_managed_fields(fieldsets, obj)
    if existing is not None and content(obj) == content(existing):
        # As the API server: a write that changes nothing keeps the resourceVersion and sends no event.
        return 200, existing
    if existing is not None and "deletionTimestamp" in meta and not meta.get("finalizers"):
        # The last finalizer removed: the object goes, and what it owned with it.
        gone = commit(key, obj, "DELETED", dry_run)
        if not dry_run:
            collect_garbage(meta["uid"], namespace)
        return 200, gone
    if not dry_run:
        STORE.fieldsets[key] = fieldsets
    committed = commit(key, obj, "ADDED" if existing is None else "MODIFIED", dry_run)
    if not dry_run and kind == "Deployment":
        STORE.schedule(key, STORE.controller["delay_seconds"])
    return (201 if existing is None else 200), committed


def server_side_apply(group, version, plural, kind, namespace, name, applied, manager, force, dry_run):
    """Server-side apply: the manager's applied configuration merged into the live object; fields another
    manager owns with a different value conflict (409) unless forced; fields the manager applied before
    and applies no more are removed unless someone else owns them."""
    if not isinstance(applied, dict):
        raise ApiError(400, "BadRequest", "the body must be an object")
    if not manager:
        raise ApiError(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
    if applied.get("metadata", {}).get("name", name) != name:
        raise ApiError(400, "BadRequest", "the name of the object does not match the name in the URL")
    key = (group, plural, namespace, name)
    live = STORE.objects.get(key)
    applied = copy.deepcopy(applied)
    applied.pop("status", None)
    applied.setdefault("metadata", {})["name"] = name
    applied_paths = field_paths(applied)
    manager_id = (manager, "Apply", None)
    fieldsets = copy.deepcopy(STORE.fieldsets.get(key, {}))
    if live is None:
        merged = applied
    else:
        conflicts = []
        for other, (owned, _, other_version) in fieldsets.items():
            if other == manager_id:
                continue
            for path in sorted(applied_paths & owned):
                if path[-1].startswith("k:"):
                    continue
                if lookup(live, path) != lookup(applied, path):
                    conflicts.append((other, path, other_version))
        if conflicts and not force:
            described = [f'conflict with "{o[0]}"' + (f' with subresource "{o[2]}"' if o[2] else "") + f" using {v}: {dotted(p)}"
                         for o, p, v in conflicts]
            causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{o[0]}" using {v}', "field": dotted(p)}
                      for o, p, v in conflicts]
            message = f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: " + "\n".join(described)
            raise ApiError(409, "Conflict", message, name, plural, causes, group=group)
        if conflicts:
            for other, path, _ in conflicts:
                owned, when, other_version = fieldsets[other]
                fieldsets[other] = (owned - {path}, when, other_version)
        merged = apply_merge({k: v for k, v in live.items() if k != "status"}, applied)
        if "status" in live:
            merged["status"] = copy.deepcopy(live["status"])
        previously = fieldsets.get(manager_id, (set(),))[0]
        others = set().union(*[owned for m, (owned, _, _) in fieldsets.items() if m != manager_id]) if len(fieldsets) > 1 else set()
        # Shorter paths first: an item of a keyed list goes as a whole.
        for path in sorted(previously - applied_paths, key=len):
            if path not in others and not any(o[:len(path)] == path for o in others):
                remove_path(merged, path)
    merged.setdefault("metadata", {}).pop("resourceVersion", None)
    take_fields(fieldsets, manager_id, applied_paths, api_version(group, version), now(), exclusive=False)
    return write(group, version, plural, kind, namespace, name, merged, manager, "Apply", dry_run=dry_run, fieldsets=fieldsets)


def dotted(path):
    return "".join("." + e[2:] if e.startswith("f:") else "[" + e[2:] + "]" for e in path)


# ---------------------------------------------------------------- the asynchronous controller

def record_event(regarding, reason, note, event_type="Normal", action=None, controller="deployment-controller"):
    """An events.k8s.io/v1 Event about an object; a repeat raises its series count instead."""
    namespace = regarding["metadata"].get("namespace") or "default"
    series_key = (namespace, regarding["metadata"]["uid"], reason, note)
    key = STORE.event_series.get(series_key)
    if key in STORE.objects:
        event = copy.deepcopy(STORE.objects[key])
        series = event.setdefault("series", {"count": 1})
        series["count"] += 1
        series["lastObservedTime"] = micro_now()
        commit(key, event, "MODIFIED")
        return
    name = f"{regarding['metadata']['name']}.{uuid.uuid4().hex[:16]}"
    event = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
             "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "creationTimestamp": now()},
             "eventTime": micro_now(), "reportingController": controller, "reportingInstance": f"{controller}-double",
             "action": action or reason, "reason": reason, "note": note, "type": event_type,
             "regarding": {"apiVersion": regarding["apiVersion"], "kind": regarding["kind"], "namespace": namespace,
                           "name": regarding["metadata"]["name"], "uid": regarding["metadata"]["uid"],
                           "resourceVersion": regarding["metadata"].get("resourceVersion", "")}}
    STORE.event_series[series_key] = ("events.k8s.io", "events", namespace, name)
    commit(STORE.event_series[series_key], event, "ADDED")


def pod_status(mode, started):
    """The status of one pod of a rollout in the given mode (None: healthy), before and after its containers start."""
    if mode == "Unschedulable":
        return {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                    "message": "0/3 nodes are available: 3 Insufficient cpu."}]}
    scheduled = [{"type": "PodScheduled", "status": "True"}]
    if not started or mode in ("NotReady", "Stalled", "ProgressDeadlineExceeded"):
        return {"phase": "Pending", "conditions": scheduled + [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                "containerStatuses": [{"name": "otel-collector", "ready": False, "restartCount": 0, "started": False,
                                       "state": {"waiting": {"reason": "ContainerCreating"}}}]}
    if mode == "ImagePullBackOff":
        return {"phase": "Pending", "conditions": scheduled + [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                "containerStatuses": [{"name": "otel-collector", "ready": False, "restartCount": 0, "started": False,
                                       "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}
    if mode in ("CrashLoopBackOff", "OOMKilled"):
        terminated = {"exitCode": 137, "reason": "OOMKilled"} if mode == "OOMKilled" else {"exitCode": 1, "reason": "Error"}
        return {"phase": "Running", "conditions": scheduled + [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                "containerStatuses": [{"name": "otel-collector", "ready": False, "restartCount": 3, "started": False,
                                       "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                             "message": "back-off 40s restarting failed container"}},
                                       "lastState": {"terminated": terminated}}]}
    return {"phase": "Running", "conditions": scheduled + [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "otel-collector", "ready": True, "restartCount": 0, "started": True,
                                   "state": {"running": {"startedAt": now()}}}]}


def with_status(obj, status):
    """A new object: the stored one (shared, never changed in place) with another status."""
    written = dict(obj)
    written["metadata"] = dict(obj["metadata"])
    written["status"] = status
    return written


def owned_pods(deployment):
    return {k: STORE.objects[k] for k in sorted(STORE.owned.get(deployment["metadata"]["uid"], ())) if k[1] == "pods" and k in STORE.objects}


def pod_ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions") or [])


def reconcile_deployment(key):
    """One pass of the Deployment controller (the lock held): pods to match the template and replicas, then
    the status as a write of its own."""
    deployment = STORE.objects.get(key)
    namespace, name = key[2], key[3]
    if deployment is None or "deletionTimestamp" in deployment["metadata"]:
        STORE.rolling.discard(key)
        return
    if STORE.controller["paused"]:
        return
    spec = deployment.get("spec") or {}
    replicas = spec.get("replicas", 1)
    template = spec.get("template") or {}
    mode = STORE.rollouts.get(name)
    pod_hash = f"{abs(hash(json.dumps(template, sort_keys=True))) % 10_000_000_000:x}"
    uid = deployment["metadata"]["uid"]
    pods = owned_pods(deployment)
    current = {k: p for k, p in pods.items() if p["metadata"].get("labels", {}).get("pod-template-hash") == pod_hash}
    old = {k: p for k, p in pods.items() if k not in current}
    later = []
    # A stuck rollout keeps the old pods serving (maxUnavailable); otherwise they are replaced. With
    # `surge` (maxSurge 1, maxUnavailable 0: a Deployment's defaults for up to three replicas) old pods
    # that serve go only once the new ones all are ready.
    new_ready = len(current) >= replicas and all(pod_ready(p) for p in current.values())
    stuck = (mode in STUCK_ROLLOUTS or (STORE.controller["surge"] and not new_ready)) and any(pod_ready(p) for p in old.values())
    for pod_key in old:
        if not stuck:
            remove(pod_key)
    for pod_key in current:
        if int(pod_key[3].rsplit("-", 1)[1]) >= replicas:
            remove(pod_key)
    current = {k: p for k, p in current.items() if k in STORE.objects}
    if mode == "ReplicaFailure":
        if len(current) < replicas:
            record_event(deployment, "FailedCreate", f'Error creating: pods "{name}-{pod_hash}-" is forbidden: exceeded quota: '
                                                     'compute-resources, requested: limits.memory=512Mi, limit: limits.memory=256Mi',
                         "Warning", "Create", "replicaset-controller")
    else:
        created = 0
        for index in range(replicas):
            pod_key = ("", "pods", namespace, f"{name}-{pod_hash}-{index:05d}")
            if pod_key in STORE.objects:
                continue
            labels = dict(template.get("metadata", {}).get("labels") or {})
            labels["pod-template-hash"] = pod_hash
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": pod_key[3], "namespace": namespace, "labels": labels, "uid": str(uuid.uuid4()),
                                "creationTimestamp": now(), "generateName": f"{name}-{pod_hash}-",
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid,
                                                     "controller": True, "blockOwnerDeletion": True}]},
                   "spec": copy.deepcopy(template.get("spec", {})), "status": pod_status(mode, False)}
            if template.get("metadata", {}).get("annotations"):
                pod["metadata"]["annotations"] = dict(template["metadata"]["annotations"])
            default_pod_spec(pod["spec"])
            if mode != "Unschedulable":
                pod["spec"]["nodeName"] = "double-node-1"
            commit(pod_key, pod, "ADDED")
            if mode == "Unschedulable":
                record_event(pod, "FailedScheduling", "0/3 nodes are available: 3 Insufficient cpu.", "Warning", "Scheduling",
                             "default-scheduler")
            STORE.pod_ready_at[pod_key] = time.time() + STORE.controller["pod_start_seconds"]
            created += 1
        if created:
            record_event(deployment, "ScalingReplicaSet", f"Scaled up replica set {name}-{pod_hash} to {replicas}")
    for pod_key, pod in owned_pods(deployment).items():
        if pod["metadata"]["labels"].get("pod-template-hash") != pod_hash:
            continue
        if mode in STUCK_ROLLOUTS and pod_ready(pod):
            continue  # a stuck rollout is about the pods it starts: one already serving stays ready
        ready_at = STORE.pod_ready_at.get(pod_key, 0)
        started = time.time() >= ready_at
        pod_mode = mode
        if pod_mode is None and started:
            # The collector reads its config once, when its container starts: a config that makes it
            # crash keeps it crashing, a later change of the Secret does not heal it.
            if pod_key not in STORE.pod_config_modes:
                STORE.pod_config_modes[pod_key] = config_crash_mode(pod)
            pod_mode = STORE.pod_config_modes[pod_key]
        wanted = pod_status(pod_mode, started)
        if time.time() < ready_at:
            later.append(ready_at - time.time())
        if json.dumps(wanted, sort_keys=True) != json.dumps({k: v for k, v in pod["status"].items() if k != "startTime"}, sort_keys=True) \
                and not (pod_ready(pod) and pod_ready({"status": wanted})):
            updated = with_status(pod, wanted)
            commit(pod_key, updated, "MODIFIED")
            waiting = (wanted.get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {}).get("reason")
            if waiting == "CrashLoopBackOff":
                record_event(updated, "BackOff", "Back-off restarting failed container otel-collector", "Warning", "Restarting", "kubelet")
            elif waiting == "ImagePullBackOff":
                record_event(updated, "Failed", "Error: ImagePullBackOff", "Warning", "Pulling", "kubelet")
    if STORE.controller["surge"] and mode not in STUCK_ROLLOUTS:
        # The new pods all ready now: the old ones they replace go.
        pods = owned_pods(deployment)
        new = [p for p in pods.values() if p["metadata"]["labels"].get("pod-template-hash") == pod_hash]
        if len(new) >= replicas and all(pod_ready(p) for p in new):
            for pod_key, pod in pods.items():
                if pod["metadata"]["labels"].get("pod-template-hash") != pod_hash:
                    remove(pod_key)
    write_deployment_status(key, replicas, pod_hash, mode)
    settled = owned_pods(deployment)
    if all(p["metadata"]["labels"].get("pod-template-hash") == pod_hash and pod_ready(p) for p in settled.values()) and len(settled) >= replicas:
        STORE.rolling.discard(key)
    else:
        STORE.rolling.add(key)
        STORE.max_rolling = max(STORE.max_rolling, len(STORE.rolling))
    if later:
        STORE.schedule(key, min(later) + 0.001)


def config_crash_mode(pod):
    """CrashLoopBackOff when a Secret or ConfigMap the pod mounts holds the text the test named
    (`crash_when_config_contains`): a config the collector cannot run with; or whose container runs an image
    that holds `crash_when_image_contains` (a template change to an image that cannot run)."""
    image_marker = STORE.controller.get("crash_when_image_contains") or ""
    if image_marker and any(image_marker in (c.get("image") or "") for c in (pod.get("spec") or {}).get("containers") or []):
        return "CrashLoopBackOff"
    marker = STORE.controller.get("crash_when_config_contains") or ""
    if not marker:
        return None
    namespace = pod["metadata"].get("namespace", "default")
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        if "secret" in volume:
            source = STORE.objects.get(("", "secrets", namespace, volume["secret"].get("secretName", "")))
        elif "configMap" in volume:
            source = STORE.objects.get(("", "configmaps", namespace, volume["configMap"].get("name", "")))
        else:
            continue
        if source is None:
            continue
        texts = list((source.get("stringData") or {}).values())
        for value in (source.get("data") or {}).values():
            try:
                texts.append(base64.b64decode(value).decode("utf-8", "replace") if "secret" in volume else value)
            except ValueError:
                texts.append(value)
        if any(marker in text for text in texts):
            return "CrashLoopBackOff"
    return None


def write_deployment_status(key, replicas, pod_hash, mode):
    deployment = STORE.objects[key]
    name = key[3]
    pods = list(owned_pods(deployment).values())
    updated = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == pod_hash]
    ready = sum(1 for p in pods if pod_ready(p))
    updated_ready = sum(1 for p in updated if pod_ready(p))
    max_unavailable = replicas // 4
    available = ready >= replicas - max_unavailable and (replicas == 0 or ready > 0)
    replica_set = f"{name}-{pod_hash}"
    old_status = deployment.get("status") or {}
    old_conditions = {c["type"]: c for c in old_status.get("conditions") or []}
    stamp = now()

    def condition(kind, status, reason, message):
        before = old_conditions.get(kind)
        transition = before["lastTransitionTime"] if before and before.get("status") == status else stamp
        update = before["lastUpdateTime"] if before and before.get("reason") == reason and before.get("status") == status else stamp
        return {"type": kind, "status": status, "lastUpdateTime": update, "lastTransitionTime": transition, "reason": reason,
                "message": message}

    conditions = [condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.") if available
                  else condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")]
    if mode == "ProgressDeadlineExceeded":
        conditions.append(condition("Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{replica_set}" has timed out progressing.'))
    elif updated_ready >= replicas and len(pods) == replicas:
        conditions.append(condition("Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{replica_set}" has successfully progressed.'))
    else:
        conditions.append(condition("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{replica_set}" is progressing.'))
    if mode == "ReplicaFailure":
        conditions.append(condition("ReplicaFailure", "True", "FailedCreate", f'pods "{replica_set}-" is forbidden: exceeded quota: compute-resources'))
    status = {"observedGeneration": deployment["metadata"].get("generation", 1), "replicas": len(pods), "updatedReplicas": len(updated),
              "readyReplicas": ready, "availableReplicas": ready, "conditions": conditions}
    if replicas - ready > 0:
        status["unavailableReplicas"] = replicas - ready
    for field in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
        if status[field] == 0:
            del status[field]
    if json.dumps(status, sort_keys=True) == json.dumps(old_status, sort_keys=True):
        return
    written = with_status(deployment, status)
    fieldsets = STORE.fieldsets.setdefault(key, {})
    take_fields(fieldsets, ("kube-controller-manager", "Update", "status"), {("f:status",) + p for p in field_paths(status)},
                "apps/v1", stamp)
    render_managed_fields(fieldsets, written)
    commit(key, written, "MODIFIED")


def finalize_namespace(key):
    namespace = key[3]
    space = STORE.objects.get(key)
    if space is None or "deletionTimestamp" not in space["metadata"]:
        return
    inside = [k for k in STORE.objects if k[2] == namespace]
    for inner in inside:
        if "deletionTimestamp" not in STORE.objects[inner]["metadata"]:
            remove(inner)
    if any(k[2] == namespace for k in STORE.objects):
        STORE.schedule(key, STORE.controller["namespace_finalize_seconds"])
        return
    commit(key, copy.deepcopy(space), "DELETED")


def controller_loop():
    with STORE.lock:
        while True:
            wait = None
            while STORE.pending and STORE.pending[0][0] <= time.time():
                _, key = heapq.heappop(STORE.pending)
                if any(k == key and due <= time.time() for due, k in STORE.pending):
                    continue
                try:
                    if key[1] == "deployments":
                        reconcile_deployment(key)
                    elif key[1] == "namespaces":
                        finalize_namespace(key)
                except Exception as error:  # a bug in the double must not stop its controller
                    print("controller:", repr(error), file=sys.stderr, flush=True)
            if STORE.pending:
                wait = max(0.0, STORE.pending[0][0] - time.time())
            STORE.lock.wait(timeout=wait if wait is not None else 1.0)


# ---------------------------------------------------------------- RBAC

def authorized(user, verb, group, resource, namespace, name):
    """Whether a RoleBinding in the namespace or a ClusterRoleBinding grants the verb to the user
    (system:serviceaccount:<namespace>:<name> for a service account)."""
    def subject_matches(subject):
        if subject.get("kind") == "ServiceAccount":
            return user == f"system:serviceaccount:{subject.get('namespace')}:{subject.get('name')}"
        return subject.get("kind") in ("User", "Group") and subject.get("name") in (user, "system:authenticated")

    def rules_of(ref, binding_namespace):
        if ref.get("kind") == "Role":
            role = STORE.objects.get(("rbac.authorization.k8s.io", "roles", binding_namespace, ref.get("name")))
        else:
            role = STORE.objects.get(("rbac.authorization.k8s.io", "clusterroles", "", ref.get("name")))
        return (role or {}).get("rules") or []

    bindings = [(o, k[2]) for k, o in STORE.objects.items()
                if (k[1] == "rolebindings" and namespace and k[2] == namespace) or k[1] == "clusterrolebindings"]
    for binding, binding_namespace in bindings:
        if not any(subject_matches(s) for s in binding.get("subjects") or []):
            continue
        for rule in rules_of(binding.get("roleRef") or {}, binding_namespace):
            if (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) \
                    and (resource in rule.get("resources", []) or "*" in rule.get("resources", [])) \
                    and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])) \
                    and (not rule.get("resourceNames") or name in rule["resourceNames"]):
                return True
    return False


# ---------------------------------------------------------------- HTTP

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

    def manager(self, query):
        """The field manager of a write: ?fieldManager, else the user agent's program name (as the API server)."""
        if query.get("fieldManager"):
            return query["fieldManager"]
        agent = self.headers.get("User-Agent") or ""
        return agent.split("/")[0] if agent else None

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
            STORE.request_log.append({"method": self.command, "path": path, "query": url.query, "agent": self.headers.get("User-Agent") or "",
                                      "at": time.monotonic()})
            faults = dict(STORE.faults)
            token = STORE.token
        self.user = None
        sent_token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if token is not None and not path.startswith("/version"):
            if sent_token != token and sent_token not in STORE.identities and not self.client_certificate():
                return self.send_json(401, status_body(401, "Unauthorized", "Unauthorized"))
        self.user = STORE.identities.get(sent_token)
        self.inject_after_commit = None
        if self.headers.get("X-Double-Control") == "1":
            faults = {k: 0 for k in faults}
        if faults["latency_seconds"]:
            time.sleep(faults["latency_seconds"])
        roll = random.random()
        if roll < faults["reset"]:
            return self.reset()
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
        if self.command != "GET":
            roll = random.random()
            if roll < faults["reset_after_commit"]:
                self.inject_after_commit = "reset"
            elif roll - faults["reset_after_commit"] < faults["error500_after_commit"]:
                self.inject_after_commit = "error500"
        try:
            return self.route(path, query)
        except ApiError as error:
            return self.send_json(error.code, error.body)
        except (ValueError, yaml.YAMLError if yaml else ValueError) as error:
            return self.send_json(400, status_body(400, "BadRequest", f"cannot decode the body: {error}"))

    def reset(self):
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def answer_write(self, code, body):
        """The answer to a committed write, unless a fault after the commit replaces it."""
        if self.inject_after_commit == "reset":
            return self.reset()
        if self.inject_after_commit == "error500":
            return self.send_json(500, status_body(500, "InternalError", "injected fault after the write was committed"))
        return self.send_json(code, body)

    def client_certificate(self):
        return isinstance(self.connection, ssl.SSLSocket) and bool(self.connection.getpeercert())

    def control(self, path, query):
        body, _ = self.body()
        body = body or {}
        with STORE.lock:
            if path == "/_double/faults":
                STORE.faults.update(body)
                return self.send_json(200, STORE.faults)
            if path == "/_double/controller":
                STORE.controller.update(body)
                for key in [k for k in STORE.objects if k[1] == "deployments"]:
                    STORE.schedule(key, 0)
                return self.send_json(200, STORE.controller)
            if path in ("/_double/rollout", "/_double/available"):
                if path == "/_double/available":
                    mode = None if body["available"] else "NotReady"
                    if body.get("failed"):
                        mode = "ProgressDeadlineExceeded"
                else:
                    mode = body.get("mode")
                    if mode is not None and mode not in ROLLOUT_MODES:
                        return self.send_json(400, status_body(400, "BadRequest", f"unknown rollout mode {mode}; one of {sorted(ROLLOUT_MODES)}"))
                if mode is None:
                    STORE.rollouts.pop(body["name"], None)
                else:
                    STORE.rollouts[body["name"]] = mode
                for key in [k for k in STORE.objects if k[1] == "deployments" and k[3] == body["name"]]:
                    # Pods of a changed rollout start over (as after a restart of their containers).
                    for pod_key in [k for k in STORE.pod_ready_at if k[2] == key[2] and k[3].startswith(body["name"] + "-")]:
                        STORE.pod_ready_at[pod_key] = time.time()
                    STORE.schedule(key, STORE.controller["delay_seconds"])
                return self.send_json(200, {})
            if path == "/_double/logs":
                STORE.logs[body["name"]] = body["text"]
                return self.send_json(200, {})
            if path == "/_double/compact":
                STORE.compact()
                return self.send_json(200, {"compacted": STORE.compacted})
            if path == "/_double/identity":
                STORE.identities[body["token"]] = body["user"]
                return self.send_json(200, {})
            if path == "/_double/stats":
                return self.send_json(200, {"requests": STORE.requests, "objects": len(STORE.objects), "resourceVersion": STORE.version,
                                            "pending": sorted({f"{k[1]}/{k[2]}/{k[3]}" for _, k in STORE.pending}),
                                            "rolling": len(STORE.rolling), "max_rolling": STORE.max_rolling})
            if path == "/_double/reset-stats":
                STORE.requests = {}
                STORE.max_rolling = len(STORE.rolling)
                return self.send_json(200, {})
            if path == "/_double/audit":
                return self.send_json(200, {"requests": [{"verb": v, "apiGroup": g, "resource": r, "namespace": n}
                                                         for (v, g, r, n) in sorted(STORE.audit)]})
            if path == "/_double/requests":
                return self.send_json(200, {"requests": list(STORE.request_log), "now": time.monotonic()})
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
                            resources.append({"name": "deployments/status", "singularName": "", "namespaced": True, "kind": "Deployment",
                                              "verbs": ["get"]})
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

    def verb(self, name, query):
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        if self.command == "GET":
            return "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list")
        if self.command == "DELETE" and not name:
            return "deletecollection"
        return verbs.get(self.command, self.command.lower())

    def authorize(self, group, plural, namespace, name, sub, query):
        """Records what RBAC checks for the request; answers 403 when the caller's identity is not granted it."""
        verb = self.verb(name, query)
        resource = plural + ("/" + sub if sub else "")
        apply_create = verb == "patch" and (self.headers.get("Content-Type") or "").startswith("application/apply-patch+yaml") \
            and (group, plural, namespace, name) not in STORE.objects
        STORE.audit.add((verb, group, resource, namespace or ""))
        # Server-side apply of an object that does not exist yet is also checked for create.
        if apply_create:
            STORE.audit.add(("create", group, resource, namespace or ""))
        if self.user is None:
            return
        for needed in [verb] + (["create"] if apply_create else []):
            if not authorized(self.user, needed, group, resource, namespace, name):
                what = f'{plural}{"." + group if group else ""}' + (f' "{name}"' if name else "")
                where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
                raise ApiError(403, "Forbidden", f'{what} is forbidden: User "{self.user}" cannot {needed} resource "{resource}" '
                                                 f'in API group "{group}"{where}', name, plural, group=group)

    def wants_metadata_only(self):
        return "as=PartialObjectMetadata" in (self.headers.get("Accept") or "")

    @staticmethod
    def metadata_only(obj):
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": copy.deepcopy(obj["metadata"])}

    def resource(self, group, version, plural, kind, namespaced, namespace, name, sub, query):
        dry_run = query.get("dryRun") == "All"
        key = (group, plural, namespace, name)
        resource_name = plural if not group else f"{plural}.{group}"
        with STORE.lock:
            self.authorize(group, plural, namespace, name, sub, query)
        if self.command == "GET" and name is None:
            if query.get("watch") in ("true", "1"):
                return self.watch(group, version, plural, kind, namespace, query)
            return self.list(group, version, plural, kind, namespace, query)
        if self.command == "POST" and name is None:
            obj, _ = self.body()
            if not isinstance(obj, dict):
                return self.send_json(400, status_body(400, "BadRequest", "the body must be an object"))
            name = obj.get("metadata", {}).get("name", "")
            if not name and obj.get("metadata", {}).get("generateName"):
                name = obj["metadata"]["generateName"] + uuid.uuid4().hex[:5]
                obj["metadata"]["name"] = name
            with STORE.lock:
                code, body = write(group, version, plural, kind, namespace, name, obj, self.manager(query), create_only=True, dry_run=dry_run)
            return self.answer_write(code, body)
        if self.command == "DELETE" and name is None:
            return self.send_json(405, status_body(405, "MethodNotAllowed", "deletecollection is not supported by the double"))
        if name is None:
            return self.send_json(405, status_body(405, "MethodNotAllowed", "method not allowed"))
        if sub == "log" and plural == "pods":
            with STORE.lock:
                pod = STORE.objects.get(("", "pods", namespace, name))
                owner = ((pod or {}).get("metadata", {}).get("ownerReferences") or [{}])[0].get("name")
                text = STORE.logs.get(owner, "")
            if pod is None:
                return self.send_json(404, status_body(404, "NotFound", f'pods "{name}" not found', name, "pods"))
            if query.get("tailLines"):
                lines = text.splitlines(keepends=True)
                text = "".join(lines[-int(query["tailLines"]):]) if int(query["tailLines"]) > 0 else ""
            return self.send_text(200, text)
        if sub == "scale" and plural == "deployments":
            return self.scale(key, namespace, name, query)
        if sub == "status" and self.command == "GET":
            sub = None
        if sub is not None:
            return self.send_json(404, status_body(404, "NotFound", f"the server could not find the requested resource ({sub})"))
        if self.command == "GET":
            with STORE.lock:
                obj = STORE.objects.get(key)
            if obj is None:
                return self.send_json(404, status_body(404, "NotFound", f'{resource_name} "{name}" not found', name, plural, group=group))
            return self.send_json(200, self.metadata_only(obj) if self.wants_metadata_only() else obj)
        if self.command == "PUT":
            obj, _ = self.body()
            with STORE.lock:
                code, body = write(group, version, plural, kind, namespace, name, obj, self.manager(query), update_only=True, dry_run=dry_run)
            return self.answer_write(code, body)
        if self.command == "PATCH":
            patch, content_type = self.body()
            with STORE.lock:
                if content_type == "application/apply-patch+yaml":
                    code, body = server_side_apply(group, version, plural, kind, namespace, name, patch, query.get("fieldManager"),
                                                   query.get("force") == "true", dry_run)
                    return self.answer_write(code, body)
                existing = copy.deepcopy(STORE.objects.get(key))
                if existing is None:
                    return self.send_json(404, status_body(404, "NotFound", f'{resource_name} "{name}" not found', name, plural, group=group))
                if content_type == "application/json-patch+json":
                    merged = json_patch(existing, patch)
                elif content_type == "application/strategic-merge-patch+json":
                    merged = strategic_merge(existing, patch)
                else:
                    merged = merge(existing, patch)
                code, body = write(group, version, plural, kind, namespace, name, merged, self.manager(query), dry_run=dry_run)
            return self.answer_write(code, body)
        if self.command == "DELETE":
            options, _ = self.body()
            propagation = query.get("propagationPolicy") or (options or {}).get("propagationPolicy") or "Background"
            with STORE.lock:
                if key not in STORE.objects:
                    return self.send_json(404, status_body(404, "NotFound", f'{resource_name} "{name}" not found', name, plural, group=group))
                obj = remove(key, dry_run, propagation)
            if "deletionTimestamp" in obj["metadata"] and key in STORE.objects:
                return self.answer_write(200, obj)
            return self.answer_write(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                           "details": {"name": name, "group": group, "kind": plural, "uid": obj["metadata"]["uid"]}})
        return self.send_json(405, status_body(405, "MethodNotAllowed", "method not allowed"))

    def list(self, group, version, plural, kind, namespace, query):
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        with STORE.lock:
            if token:
                try:
                    snapshot_id = json.loads(base64.b64decode(token))["id"]
                except (ValueError, KeyError, TypeError):
                    raise ApiError(400, "BadRequest", "continue key is not valid")
                if snapshot_id not in STORE.snapshots:
                    raise ApiError(410, "Expired", "The provided continue parameter is too old to display a consistent list result. "
                                                   "You can start a new list without the continue parameter.")
                list_version, items = STORE.snapshots.pop(snapshot_id)
            else:
                try:
                    items = [o for k, o in sorted(STORE.objects.items())
                             if k[0] == group and k[1] == plural and (namespace is None or k[2] == namespace)
                             and matches_labels(o, query.get("labelSelector")) and matches_fields(o, query.get("fieldSelector"))]
                except ValueError as error:
                    raise ApiError(400, "BadRequest", f"unable to parse requirement: {error}")
                list_version = str(STORE.version)
            metadata = {"resourceVersion": list_version}
            if limit and len(items) > limit:
                snapshot_id = uuid.uuid4().hex
                STORE.snapshots[snapshot_id] = (list_version, items[limit:])
                metadata["continue"] = base64.b64encode(json.dumps({"id": snapshot_id, "rv": list_version}).encode()).decode()
                metadata["remainingItemCount"] = len(items) - limit
                items = items[:limit]
        if self.wants_metadata_only():
            return self.send_json(200, {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
                                        "items": [self.metadata_only(o) for o in items]})
        return self.send_json(200, {"kind": kind + "List", "apiVersion": api_version(group, version), "metadata": metadata, "items": items})

    def scale(self, key, namespace, name, query):
        with STORE.lock:
            deployment = STORE.objects.get(key)
            if deployment is None:
                return self.send_json(404, status_body(404, "NotFound", f'deployments.apps "{name}" not found', name, "deployments", group="apps"))
            if self.command in ("PUT", "PATCH"):
                body, _ = self.body()
                replicas = (body.get("spec") or {}).get("replicas", deployment["spec"].get("replicas", 1))
                scaled = copy.deepcopy(deployment)
                scaled["spec"]["replicas"] = replicas
                _, deployment = write("apps", "v1", "deployments", "Deployment", namespace, name, scaled, self.manager(query),
                                      subresource="scale", dry_run=query.get("dryRun") == "All")
            scale = {"kind": "Scale", "apiVersion": "autoscaling/v1",
                     "metadata": {"name": name, "namespace": namespace, "resourceVersion": deployment["metadata"]["resourceVersion"]},
                     "spec": {"replicas": deployment["spec"].get("replicas", 1)},
                     "status": {"replicas": deployment.get("status", {}).get("replicas", 0)}}
        return self.send_json(200, scale)

    def watch(self, group, version, plural, kind, namespace, query):
        timeout = float(query.get("timeoutSeconds", "30"))
        start_version = int(query.get("resourceVersion") or 0)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        metadata_only = self.wants_metadata_only()
        selector = query.get("labelSelector")
        try:
            parse_selector(selector)
        except ValueError as error:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {error}")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def emit(kind_of_event, obj):
            if metadata_only and kind_of_event in ("ADDED", "MODIFIED", "DELETED"):
                obj = self.metadata_only(obj)
            line = (json.dumps({"type": kind_of_event, "object": obj}) + "\n").encode()
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        def wanted(key, obj):
            return (key[0] == group and key[1] == plural and (namespace is None or key[2] == namespace)
                    and matches_labels(obj, selector) and matches_fields(obj, query.get("fieldSelector")))

        deadline = time.time() + timeout
        with STORE.lock:
            expired = start_version != 0 and start_version < STORE.compacted
            if start_version == 0:
                initial = [(k, o) for k, o in STORE.objects.items() if wanted(k, o)]
                seen = STORE.version
            else:
                # Everything that happened after the given resourceVersion, as it happened.
                initial = [(k, o, t) for (v, k, t, o) in STORE.events if v > start_version and wanted(k, o)]
                seen = max([start_version] + [e[0] for e in STORE.events])
        try:
            if expired:
                emit("ERROR", status_body(410, "Expired", f"too old resource version: {start_version} ({STORE.compacted + 1})"))
                self.wfile.write(b"0\r\n\r\n")
                self.close_connection = True
                return
            for entry in initial:
                emit(entry[2] if len(entry) == 3 else "ADDED", entry[1])
            next_bookmark = time.time() + STORE.controller["bookmark_seconds"]
            while time.time() < deadline:
                with STORE.lock:
                    STORE.lock.wait(timeout=max(0.0, min(deadline, next_bookmark) - time.time()))
                    # A watcher that fell behind the history (it could not take the events as fast as they
                    # came) is ended with 410, as the API server's watch cache ends one: its client lists again.
                    behind = seen < STORE.compacted
                    fresh = [(v, k, t, o) for (v, k, t, o) in STORE.events if v > seen and wanted(k, o)]
                    if STORE.events:
                        seen = max(seen, STORE.events[-1][0])
                    current = STORE.version
                    bookmark_every = STORE.controller["bookmark_seconds"]
                if behind:
                    emit("ERROR", status_body(410, "Expired", f"too old resource version: {seen} ({STORE.compacted + 1})"))
                    break
                for _, _, kind_of_event, obj in fresh:
                    emit(kind_of_event, obj)
                if bookmarks and time.time() >= next_bookmark:
                    emit("BOOKMARK", {"kind": kind, "apiVersion": api_version(group, version), "metadata": {"resourceVersion": str(current)}})
                if time.time() >= next_bookmark:
                    next_bookmark = time.time() + bookmark_every
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


def json_patch(obj, operations):
    """RFC 6902 add, replace, remove and test (with ~0/~1 escapes and list indices)."""
    obj = copy.deepcopy(obj)
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node = obj
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        last = parts[-1]
        if op["op"] == "test":
            actual = node[int(last)] if isinstance(node, list) else node.get(last)
            if actual != op.get("value"):
                raise ApiError(422, "Invalid", f"the test operation on {op['path']} failed")
        elif op["op"] in ("add", "replace"):
            if isinstance(node, list):
                if last == "-":
                    node.append(op["value"])
                elif op["op"] == "add":
                    node.insert(int(last), op["value"])
                else:
                    node[int(last)] = op["value"]
            else:
                node[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(node, list):
                del node[int(last)]
            else:
                node.pop(last, None)
    return obj


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
    with STORE.lock:
        for namespace in args.namespace:
            write("", "v1", "namespaces", "Namespace", "", namespace, {"metadata": {"name": namespace}}, "double")
    threading.Thread(target=controller_loop, daemon=True).start()
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
