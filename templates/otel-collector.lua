-- The collector of one sink: a Secret with the collector config (it carries credentials), a
-- Deployment whose probes use the health_check extension, and a Service — Orb's shape otherwise
-- (reference §5). The host passes the per-collector inputs (collector_name, sink_id, owner_id,
-- config_yaml, config_hash) with the values below, defaults filled in.
--
-- Exporter endpoints are tenant input the cluster will call, so the pod runs hardened: the restricted
-- Pod Security profile (non-root, no privilege escalation, every capability dropped, seccomp
-- RuntimeDefault), a read-only root filesystem (an emptyDir on /tmp), no service-account token, and
-- default requests and limits. With network_policy = true a NetworkPolicy lets the collector reach
-- DNS and anything outside egress_deny_cidrs (cloud-metadata, link-local and internal ranges by
-- default), plus egress_allow_cidrs (e.g. the Kafka brokers when they run in the cluster).

local template = {
  name = "otel-collector",
  version = "1.0.0",
  values = {
    fields = {
      namespace = { type = "string", default = "otelcollectors", description = "Namespace of the collectors." },
      image = { type = "string", default = "otel/opentelemetry-collector-contrib:0.91.0", description = "Collector image." },
      replicas = {
        type = "integer",
        description = "Pods per collector. Unset, the Deployment does not say (the API server's default is 1), so an HPA or `kubectl scale` may own it.",
      },
      resources = { type = "map", description = "Container resources (requests, limits)." },
      node_selector = { type = "string_map", description = "Pod nodeSelector." },
      tolerations = { type = "list", description = "Pod tolerations." },
      labels = { type = "string_map", description = "Extra labels on every object." },
      annotations = { type = "string_map", description = "Extra annotations on every object." },
      service_type = { type = "string", default = "ClusterIP", enum = { "ClusterIP", "NodePort", "LoadBalancer" } },
      run_as_user = { type = "integer", default = 10001, description = "UID (and GID) the collector runs as (the contrib image's user)." },
      network_policy = { type = "boolean", default = false, description = "Render a NetworkPolicy limiting the collector's egress." },
      egress_deny_cidrs = {
        type = "list",
        description = "Ranges the NetworkPolicy keeps the collector from (default: link-local, cloud metadata, private, CGNAT, IPv6 ULA).",
      },
      egress_allow_cidrs = { type = "list", description = "Ranges the collector may reach despite egress_deny_cidrs (Kafka brokers, in-cluster exporters)." },
    },
  },
}

-- Requests and limits when the values set none.
local DEFAULT_RESOURCES = {
  requests = { cpu = "100m", memory = "128Mi" },
  limits = { cpu = "1", memory = "512Mi" },
}

-- What the NetworkPolicy keeps collectors from by default: link-local (every cloud's metadata
-- service on 169.254.169.254, fe80::/10), Alibaba's 100.100.100.200 (inside 100.64.0.0/10), Oracle's
-- 192.0.0.192, Azure's WireServer, the private ranges and IPv6 unique-local (AWS fd00:ec2::254 and
-- GCP fd20:ce::254 inside fc00::/7). Kept in step with Sources/MaestroHTTP/AddressPolicy.swift.
local DEFAULT_DENIED = {
  "169.254.0.0/16", "100.64.0.0/10", "192.0.0.192/32", "168.63.129.16/32", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
  "127.0.0.0/8", "0.0.0.0/8", "fe80::/10", "fc00::/7", "::1/128",
}

local HEALTH_PORT = 13133
local METRICS_PORT = 8888
local CONFIG_DIR = "/etc/otelcol-contrib"

local function merged(base, extra)
  local result = {}
  for key, value in pairs(base) do result[key] = value end
  for key, value in pairs(extra or {}) do
    if result[key] == nil then result[key] = value end
  end
  return result
end

-- Egress to DNS (kube-dns in any namespace), to every address outside the denied ranges, and to the
-- allowed ones; ingress stays open (probes and scrapes come from the cluster).
local function network_policy(metadata, selector, denied, allowed)
  local except4, except6 = {}, {}
  for _, cidr in ipairs(denied) do
    if string.find(cidr, ":", 1, true) then except6[#except6 + 1] = cidr else except4[#except4 + 1] = cidr end
  end
  local everywhere = {
    { ipBlock = { cidr = "0.0.0.0/0", except = except4 } },
    { ipBlock = { cidr = "::/0", except = except6 } },
  }
  for _, peer in ipairs(everywhere) do
    if #peer.ipBlock.except == 0 then peer.ipBlock.except = nil end
  end
  local egress = {
    {
      to = { { namespaceSelector = maestro.empty_map(), podSelector = { matchLabels = { ["k8s-app"] = "kube-dns" } } } },
      ports = { { protocol = "UDP", port = 53 }, { protocol = "TCP", port = 53 } },
    },
    { to = everywhere },
  }
  if #allowed > 0 then
    local peers = {}
    for _, cidr in ipairs(allowed) do peers[#peers + 1] = { ipBlock = { cidr = cidr } } end
    egress[#egress + 1] = { to = peers }
  end
  return {
    apiVersion = "networking.k8s.io/v1",
    kind = "NetworkPolicy",
    metadata = metadata,
    spec = {
      podSelector = { matchLabels = selector },
      policyTypes = { "Egress" },
      egress = egress,
    },
  }
end

function template.render(values)
  local name = values.collector_name
  local labels = merged({
    ["app.kubernetes.io/name"] = "opentelemetry-collector",
    ["app.kubernetes.io/instance"] = name,
    ["app.kubernetes.io/managed-by"] = "maestro",
  }, values.labels)
  local annotations = merged({ ["maestro.orb.community/sink-id"] = values.sink_id }, values.annotations)
  local function metadata()
    return { name = name, namespace = values.namespace, labels = labels, annotations = annotations }
  end
  local selector = { ["app.kubernetes.io/instance"] = name }
  local pod_labels = merged({ app = "opentelemetry", component = name }, labels)

  local container = {
    name = "otel-collector",
    image = values.image,
    args = { "--config=" .. CONFIG_DIR .. "/config.yaml" },
    ports = {
      { name = "healthcheck", containerPort = HEALTH_PORT, protocol = "TCP" },
      { name = "metrics", containerPort = METRICS_PORT, protocol = "TCP" },
    },
    readinessProbe = { httpGet = { path = "/", port = HEALTH_PORT }, periodSeconds = 10 },
    livenessProbe = { httpGet = { path = "/", port = HEALTH_PORT }, initialDelaySeconds = 15, periodSeconds = 20 },
    volumeMounts = {
      { name = "config", mountPath = CONFIG_DIR .. "/config.yaml", subPath = "config.yaml", readOnly = true },
      { name = "tmp", mountPath = "/tmp" },
    },
    resources = values.resources or DEFAULT_RESOURCES,
    securityContext = {
      allowPrivilegeEscalation = false,
      readOnlyRootFilesystem = true,
      runAsNonRoot = true,
      capabilities = { drop = { "ALL" } },
      seccompProfile = { type = "RuntimeDefault" },
    },
  }

  local pod_spec = {
    automountServiceAccountToken = false,
    securityContext = {
      runAsNonRoot = true,
      runAsUser = values.run_as_user,
      runAsGroup = values.run_as_user,
      fsGroup = values.run_as_user,
      seccompProfile = { type = "RuntimeDefault" },
    },
    containers = { container },
    volumes = {
      { name = "config", secret = { secretName = name } },
      { name = "tmp", emptyDir = { sizeLimit = "64Mi" } },
    },
  }
  if values.node_selector ~= nil and next(values.node_selector) ~= nil then pod_spec.nodeSelector = values.node_selector end
  if values.tolerations ~= nil and #values.tolerations > 0 then pod_spec.tolerations = values.tolerations end

  local objects = {
    {
      apiVersion = "v1",
      kind = "Secret",
      metadata = metadata(),
      type = "Opaque",
      stringData = { ["config.yaml"] = values.config_yaml },
    },
    {
      apiVersion = "apps/v1",
      kind = "Deployment",
      metadata = metadata(),
      spec = {
        -- nil when no value sets it: a field maestro applies is a field maestro owns, and its next apply
        -- would undo another manager's scaling.
        replicas = values.replicas,
        selector = { matchLabels = selector },
        template = {
          metadata = {
            labels = pod_labels,
            annotations = {
              ["prometheus.io/scrape"] = "true",
              ["prometheus.io/port"] = tostring(METRICS_PORT),
              ["prometheus.io/path"] = "/metrics",
              ["maestro.orb.community/config-hash"] = values.config_hash,
            },
          },
          spec = pod_spec,
        },
      },
    },
    {
      apiVersion = "v1",
      kind = "Service",
      metadata = metadata(),
      spec = {
        type = values.service_type,
        selector = selector,
        ports = {
          { name = "metrics", port = METRICS_PORT, targetPort = METRICS_PORT, protocol = "TCP" },
          { name = "healthcheck", port = HEALTH_PORT, targetPort = HEALTH_PORT, protocol = "TCP" },
        },
      },
    },
  }
  if values.network_policy then
    objects[#objects + 1] = network_policy(metadata(), selector, values.egress_deny_cidrs or DEFAULT_DENIED, values.egress_allow_cidrs or {})
  end
  return objects
end

return template
