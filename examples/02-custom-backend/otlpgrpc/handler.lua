local otel = require "_lib.otel"

local handler = {}

-- The shared builder makes the receivers, extensions and pipeline; this backend adds what the otlp
-- exporter needs beyond an endpoint.
function handler.on_sink_create(sink)
  local exporter = sink.config.exporter
  if exporter.endpoint:find("://", 1, true) then
    -- A schema can say "one word"; "host:port without a scheme" is this plugin's own rule.
    maestro.fail("exporter.endpoint must be host:port without a scheme, got " .. exporter.endpoint)
  end
  local config = otel.collector_config(sink, "otlp", exporter.endpoint, exporter.headers)
  config.exporters.otlp.tls = { insecure = exporter.insecure }
  config.exporters.otlp.compression = exporter.compression
  return config
end

handler.on_sink_update = handler.on_sink_create

return handler
