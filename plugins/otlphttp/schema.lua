local otel = require "_lib.otel"

return {
  name = "otlphttp",
  version = "1.0.0",
  description = "OTLP over HTTP: the collector exports metrics with the otlphttp exporter.",
  binds = { sink_backend = "otlphttp" },
  sink = {
    fields = {
      exporter = {
        type = "map",
        required = true,
        fields = {
          endpoint = { type = "url", required = true, description = "OTLP/HTTP endpoint, e.g. https://otlp.example.com." },
          headers = { type = "string_map", forbidden_keys = otel.forbidden_headers, description = "Extra HTTP headers." },
        },
      },
      authentication = otel.authentication_field,
    },
  },
  settings = { fields = otel.settings_fields },
}
