local handler = require "otlpgrpc.handler"

local settings = {
  topic_prefix = "otlp_metrics-", protocol_version = "2.0.0",
  health_check_endpoint = "0.0.0.0:13133", pprof_endpoint = "0.0.0.0:1888",
}

local function sink(exporter)
  return {
    id = "grpc-1", owner_id = "o", backend = "otlpgrpc", settings = settings, kafka_url = "kafka:9092",
    config = { exporter = exporter, authentication = { type = "bearertokenauth", scheme = "Bearer", token = "t" } },
  }
end

describe("otlpgrpc", function()
  it("exports with otlp to host:port with TLS and compression", function()
    local config = handler.on_sink_create(sink({ endpoint = "otlp.example.com:4317", insecure = false, compression = "gzip" }))
    assert.equals("otlp.example.com:4317", config.exporters.otlp.endpoint)
    assert.same({ insecure = false }, config.exporters.otlp.tls)
    assert.equals("gzip", config.exporters.otlp.compression)
    assert.same({ "otlp" }, config.service.pipelines.metrics.exporters)
    assert.equals("otlp_metrics-grpc-1", config.receivers.kafka.topic)
  end)

  it("authenticates with the bearer token extension", function()
    local config = handler.on_sink_create(sink({ endpoint = "otlp.example.com:4317", insecure = true, compression = "none" }))
    assert.equals("bearertokenauth/withscheme", config.exporters.otlp.auth.authenticator)
    assert.equals("t", config.extensions["bearertokenauth/withscheme"].token)
  end)

  it("refuses an endpoint with a scheme or a bad port, as the pipeline would (schema pattern and validate hook)", function()
    local function with(endpoint)
      return { exporter = { endpoint = endpoint }, authentication = { type = "bearertokenauth", scheme = "Bearer", token = "t" } }
    end
    assert.same({ nil, "exporter.endpoint must match the pattern ^[%w%.%-]+:%d+$" }, { spec.validate(with("https://otlp.example.com:4317")) })
    assert.same({ nil, "exporter.endpoint must have a port between 1 and 65535" }, { spec.validate(with("otlp.example.com:99999")) })
    local config = spec.validate(with("otlp.example.com:4317"))
    assert.equals("gzip", config.exporter.compression)
  end)
end)
