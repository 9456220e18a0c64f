-- The collector of one sink: a Secret with the collector config (it carries credentials), a
-- Deployment whose probes use the health_check extension, and a Service — Orb's shape otherwise
-- (reference §5). The host passes the per-collector inputs (collector_name, sink_id, owner_id,
-- config_yaml, config_hash) with the values below, defaults filled in.

local template = {
  name = "otel-collector",
  version = "1.0.0",
  values = {
    fields = {
      namespace = { type = "string", default = "otelcollectors", description = "Namespace of the collectors." },
      image = { type = "string", default = "otel/opentelemetry-collector-contrib:0.91.0", description = "Collector image." },
      replicas = { type = "integer", default = 1, description = "Pods per collector." },
      resources = { type = "map", description = "Container resources (requests, limits)." },
      node_selector = { type = "string_map", description = "Pod nodeSelector." },
      tolerations = { type = "list", description = "Pod tolerations." },
      labels = { type = "string_map", description = "Extra labels on every object." },
      annotations = { type = "string_map", description = "Extra annotations on every object." },
      service_type = { type = "string", default = "ClusterIP", enum = { "ClusterIP", "NodePort", "LoadBalancer" } },
    },
  },
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
    volumeMounts = { { name = "config", mountPath = CONFIG_DIR .. "/config.yaml", subPath = "config.yaml", readOnly = true } },
  }
  if values.resources ~= nil then container.resources = values.resources end

  local pod_spec = {
    containers = { container },
    volumes = { { name = "config", secret = { secretName = name } } },
  }
  if values.node_selector ~= nil and next(values.node_selector) ~= nil then pod_spec.nodeSelector = values.node_selector end
  if values.tolerations ~= nil and #values.tolerations > 0 then pod_spec.tolerations = values.tolerations end

  return {
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
end

return template
