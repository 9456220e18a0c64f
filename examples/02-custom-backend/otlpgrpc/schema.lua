local otel = require "_lib.otel"

-- OTLP over gRPC: the collector's `otlp` exporter takes host:port (no scheme), TLS settings and an
-- optional compression; authentication is Orb's (basic auth or a bearer token).
return {
  name = "otlpgrpc",
  version = "0.1.0",
  description = "OTLP over gRPC: the collector exports metrics with the otlp exporter.",
  binds = { sink_backend = "otlpgrpc" },
  sink = {
    fields = {
      exporter = {
        type = "map",
        required = true,
        fields = {
          endpoint = {
            type = "word", required = true,
            description = "host:port of the OTLP/gRPC receiver, e.g. otlp.example.com:4317.",
            -- host:port without a scheme: the otlp exporter takes no URL.
            pattern = "^[%w%.%-]+:%d+$",
            validate = function(value)
              local port = tonumber(value:match(":(%d+)$"))
              if port < 1 or port > 65535 then return false, "must have a port between 1 and 65535" end
              return true
            end,
          },
          insecure = { type = "boolean", default = false, description = "Plaintext gRPC (no TLS); for in-cluster receivers only." },
          compression = { type = "string", default = "gzip", enum = { "gzip", "zstd", "none" }, description = "Payload compression." },
          headers = { type = "string_map", forbidden_keys = otel.forbidden_headers, description = "Extra gRPC metadata." },
        },
      },
      authentication = otel.authentication_field,
    },
  },
  settings = { fields = otel.settings_fields },
}
