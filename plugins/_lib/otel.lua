-- Shared by the sink backend plugins: the collector config Orb generates per sink (reference §4),
-- plus the health_check extension whose port the pod's probes use.
local otel = {}

-- Headers no sink may set, for every backend (Orb's rule).
otel.forbidden_headers = { "Content-Encoding", "Content-Type", "User-Agent", "Authorization" }

-- The authentication part of a sink schema: basic auth or a bearer token with its scheme.
otel.authentication_field = {
  type = "map",
  required = true,
  description = "How the exporter authenticates to the backend.",
  variants = {
    by = "type",
    cases = {
      basicauth = {
        username = { type = "nonblank", required = true, description = "User name." },
        password = { type = "nonblank", required = true, secret = true, description = "Password (plaintext or Orb-encrypted)." },
      },
      bearertokenauth = {
        scheme = { type = "word", required = true, description = "Authorization scheme, e.g. Bearer." },
        token = { type = "word", required = true, secret = true, description = "Token (plaintext or Orb-encrypted)." },
      },
    },
  },
}

-- Settings every backend plugin accepts in the config file's `plugins:` section.
otel.settings_fields = {
  topic_prefix = { type = "string", default = "otlp_metrics-", description = "Kafka topic = prefix .. sink id." },
  protocol_version = { type = "string", default = "2.0.0", description = "Kafka protocol version." },
  kafka_brokers = { type = "list", description = "Kafka brokers; default: the --kafka-url setting." },
  kafka_auth = { type = "map", description = "Optional Kafka receiver auth block, copied as is." },
  health_check_endpoint = { type = "string", default = "0.0.0.0:13133", description = "health_check extension endpoint." },
  pprof_endpoint = { type = "string", default = "0.0.0.0:1888", description = "pprof extension endpoint." },
}

-- The authenticator extension for a validated authentication block: name and settings.
function otel.authenticator(auth)
  if auth.type == "basicauth" then
    return "basicauth/exporter", { client_auth = { username = auth.username, password = auth.password } }
  end
  return "bearertokenauth/withscheme", { scheme = auth.scheme, token = auth.token }
end

-- The whole collector config. `exporter_name` is the exporter's key (prometheusremotewrite,
-- otlphttp); `endpoint` its URL; `headers` optional.
function otel.collector_config(sink, exporter_name, endpoint, headers)
  local settings = sink.settings
  local auth_name, auth_settings = otel.authenticator(sink.config.authentication)
  local exporter = { endpoint = endpoint, auth = { authenticator = auth_name } }
  if headers ~= nil and next(headers) ~= nil then exporter.headers = headers end

  local kafka = {
    brokers = settings.kafka_brokers or { sink.kafka_url },
    topic = settings.topic_prefix .. sink.id,
    protocol_version = settings.protocol_version,
  }
  if settings.kafka_auth ~= nil then kafka.auth = settings.kafka_auth end

  return {
    receivers = { kafka = kafka },
    extensions = {
      pprof = { endpoint = settings.pprof_endpoint },
      health_check = { endpoint = settings.health_check_endpoint },
      [auth_name] = auth_settings,
    },
    exporters = { [exporter_name] = exporter },
    service = {
      extensions = { "pprof", "health_check", auth_name },
      pipelines = { metrics = { receivers = { "kafka" }, exporters = { exporter_name } } },
    },
  }
end

-- The sink config rules every backend shares: an `exporter` map with the endpoint field (`url`,
-- required) and optional headers, plus `authentication`. `extra_forbidden` adds header names.
function otel.sink_fields(endpoint_field, endpoint_description, extra_forbidden)
  local forbidden = {}
  for _, name in ipairs(extra_forbidden or {}) do forbidden[#forbidden + 1] = name end
  for _, name in ipairs(otel.forbidden_headers) do forbidden[#forbidden + 1] = name end
  return {
    exporter = {
      type = "map",
      required = true,
      fields = {
        [endpoint_field] = { type = "url", required = true, description = endpoint_description },
        headers = { type = "string_map", forbidden_keys = forbidden, description = "Extra HTTP headers." },
      },
    },
    authentication = otel.authentication_field,
  }
end

return otel
