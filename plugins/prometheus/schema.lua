local otel = require "_lib.otel"

local forbidden = { "X-Prometheus-Remote-Write-Version" }
for _, name in ipairs(otel.forbidden_headers) do forbidden[#forbidden + 1] = name end

return {
  name = "prometheus",
  version = "1.0.0",
  description = "Prometheus remote write: the collector exports metrics with the prometheusremotewrite exporter.",
  binds = { sink_backend = "prometheus" },
  sink = {
    fields = {
      exporter = {
        type = "map",
        required = true,
        fields = {
          remote_host = { type = "url", required = true, description = "Remote-write URL, e.g. https://prom.example.com/api/v1/write." },
          headers = { type = "string_map", forbidden_keys = forbidden, description = "Extra HTTP headers." },
        },
      },
      authentication = otel.authentication_field,
    },
  },
  settings = { fields = otel.settings_fields },
}
