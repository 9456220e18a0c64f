local otel = require "_lib.otel"

-- Typed for editors (plugins/_meta/schema.lua): lua-language-server completes and checks this table.
---@type maestro.Schema
local schema = {
  name = "prometheus",
  version = "1.0.0",
  description = "Prometheus remote write: the collector exports metrics with the prometheusremotewrite exporter.",
  binds = { sink_backend = "prometheus" },
  sink = {
    fields = otel.sink_fields("remote_host", "Remote-write URL, e.g. https://prom.example.com/api/v1/write.",
      { "X-Prometheus-Remote-Write-Version" }),
  },
  settings = { fields = otel.settings_fields },
}

return schema
