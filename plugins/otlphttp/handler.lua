local otel = require "_lib.otel"

local handler = {}

function handler.on_sink_create(sink)
  local exporter = sink.config.exporter
  return otel.collector_config(sink, "otlphttp", exporter.endpoint, exporter.headers, { signals = sink.config.signals })
end

handler.on_sink_update = handler.on_sink_create

return handler
