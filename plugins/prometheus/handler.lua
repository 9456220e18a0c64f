local otel = require "_lib.otel"

local handler = {}

-- Builds the collector config; the host has validated `sink.config` against schema.lua already.
function handler.on_sink_create(sink)
  local exporter = sink.config.exporter
  return otel.collector_config(sink, "prometheusremotewrite", exporter.remote_host, exporter.headers)
end

handler.on_sink_update = handler.on_sink_create

return handler
