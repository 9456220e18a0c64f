local otel = require "_lib.otel"

local handler = {}

-- The shared builder makes the receivers, extensions and pipeline; this backend adds what the otlp
-- exporter needs beyond an endpoint.
function handler.on_sink_create(sink)
  -- schema.lua has checked the endpoint (host:port, a valid port) before this runs.
  local exporter = sink.config.exporter
  local config = otel.collector_config(sink, "otlp", exporter.endpoint, exporter.headers)
  config.exporters.otlp.tls = { insecure = exporter.insecure }
  config.exporters.otlp.compression = exporter.compression
  return config
end

handler.on_sink_update = handler.on_sink_create

return handler
