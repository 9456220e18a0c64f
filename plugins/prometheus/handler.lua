local otel = require "_lib.otel"

local handler = {}

-- Builds the collector config; the host has validated `sink.config` against schema.lua already.
function handler.on_sink_create(sink)
  local exporter = sink.config.exporter
  -- Remote write carries metrics only: Orb's config, one metrics pipeline.
  return otel.collector_config(sink, "prometheusremotewrite", exporter.remote_host, exporter.headers, { supported = { "metrics" } })
end

handler.on_sink_update = handler.on_sink_create

return handler
