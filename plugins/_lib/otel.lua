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
  topic_prefix = { type = "string", default = "otlp_metrics-", description = "Metrics' Kafka topic = prefix .. sink id." },
  logs_topic_prefix = { type = "string", default = "otlp_logs-", description = "Logs' Kafka topic = prefix .. sink id." },
  traces_topic_prefix = { type = "string", default = "otlp_spans-", description = "Traces' Kafka topic = prefix .. sink id." },
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

-- The signals a collector can carry, each from its own Kafka topic into its own pipeline.
otel.signals = { "metrics", "logs", "traces" }

-- A sink config field choosing the signals (for backends that export more than metrics).
otel.signals_field = {
  type = "list",
  default = { "metrics" },
  min_items = 1,
  max_items = 3,
  items = { type = "string", one_of = otel.signals },
  description = "Signals the collector carries: metrics, logs, traces (each from its own Kafka topic).",
}

-- Where each signal's Kafka topic name starts (the settings), and its receiver's name: metrics keep
-- Orb's shape (receiver `kafka`, topic otlp_metrics-<sink id>).
local topic_setting = { metrics = "topic_prefix", logs = "logs_topic_prefix", traces = "traces_topic_prefix" }
local receiver_name = { metrics = "kafka", logs = "kafka/logs", traces = "kafka/traces" }

-- The whole collector config. `exporter_name` is the exporter's key (prometheusremotewrite,
-- otlphttp); `endpoint` its URL; `headers` optional. `options.signals` lists the pipelines to build
-- (default: metrics only, Orb's config); `options.supported` the signals the exporter can send (default:
-- all) — asking for another is the user's mistake, rejected with a message naming `signals`.
function otel.collector_config(sink, exporter_name, endpoint, headers, options)
  options = options or {}
  local signals = options.signals or { "metrics" }
  local supported = options.supported or otel.signals
  if type(signals) ~= "table" or #signals == 0 then error("otel.collector_config: options.signals must be a non-empty list", 2) end
  local seen = {}
  for _, signal in ipairs(signals) do
    if receiver_name[signal] == nil then error("otel.collector_config: unknown signal " .. tostring(signal), 2) end
    if seen[signal] then maestro.reject("signals", "names " .. signal .. " twice") end
    seen[signal] = true
    local allowed = false
    for _, name in ipairs(supported) do if name == signal then allowed = true end end
    if not allowed then
      maestro.reject("signals", "asks for " .. signal .. ", but the " .. exporter_name .. " exporter sends " .. table.concat(supported, ", ") .. " only")
    end
  end

  local settings = sink.settings
  local auth_name, auth_settings = otel.authenticator(sink.config.authentication)
  local exporter = { endpoint = endpoint, auth = { authenticator = auth_name } }
  if headers ~= nil and next(headers) ~= nil then exporter.headers = headers end

  local receivers, pipelines = {}, {}
  for _, signal in ipairs(signals) do
    local kafka = {
      brokers = settings.kafka_brokers or { sink.kafka_url },
      topic = settings[topic_setting[signal]] .. sink.id,
      protocol_version = settings.protocol_version,
    }
    if settings.kafka_auth ~= nil then kafka.auth = settings.kafka_auth end
    receivers[receiver_name[signal]] = kafka
    pipelines[signal] = { receivers = { receiver_name[signal] }, exporters = { exporter_name } }
  end

  return {
    receivers = receivers,
    extensions = {
      pprof = { endpoint = settings.pprof_endpoint },
      health_check = { endpoint = settings.health_check_endpoint },
      [auth_name] = auth_settings,
    },
    exporters = { [exporter_name] = exporter },
    service = {
      extensions = { "pprof", "health_check", auth_name },
      pipelines = pipelines,
    },
  }
end

-- The sink config rules every backend shares: an `exporter` map with the endpoint field (`url`,
-- required) and optional headers, plus `authentication`. `extra_forbidden` adds header names;
-- `extra_fields` adds top-level fields (such as `signals = otel.signals_field`).
function otel.sink_fields(endpoint_field, endpoint_description, extra_forbidden, extra_fields)
  local forbidden = {}
  for _, name in ipairs(extra_forbidden or {}) do forbidden[#forbidden + 1] = name end
  for _, name in ipairs(otel.forbidden_headers) do forbidden[#forbidden + 1] = name end
  local fields = {
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
  for name, rule in pairs(extra_fields or {}) do fields[name] = rule end
  return fields
end

return otel
