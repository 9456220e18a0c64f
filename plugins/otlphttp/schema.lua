local otel = require "_lib.otel"

-- Typed for editors (plugins/_meta/schema.lua): lua-language-server completes and checks this table.
---@type maestro.Schema
local schema = {
  name = "otlphttp",
  version = "1.0.0",
  description = "OTLP over HTTP: the collector exports metrics (and, when the sink asks, logs and traces) with the otlphttp exporter.",
  binds = { sink_backend = "otlphttp" },
  sink = {
    fields = otel.sink_fields("endpoint", "OTLP/HTTP endpoint, e.g. https://otlp.example.com.", nil, { signals = otel.signals_field }),
  },
  settings = { fields = otel.settings_fields },
}

return schema
