local handler = require "otlphttp.handler"

local settings = {
  topic_prefix = "otlp_metrics-", protocol_version = "2.0.0", kafka_brokers = { "k1:9092", "k2:9092" },
  health_check_endpoint = "0.0.0.0:13133", pprof_endpoint = "0.0.0.0:1888",
}

describe("otlphttp", function()
  it("exports with otlphttp to the endpoint, brokers from the settings", function()
    local config = handler.on_sink_create({
      id = "sink-id-22", owner_id = "o", backend = "otlphttp", settings = settings, kafka_url = "ignored:1",
      config = { exporter = { endpoint = "https://acme.com/otlphttp/push" },
                 authentication = { type = "basicauth", username = "u", password = "p" } },
    })
    assert.equals("https://acme.com/otlphttp/push", config.exporters.otlphttp.endpoint)
    assert.same({ "k1:9092", "k2:9092" }, config.receivers.kafka.brokers)
    assert.same({ "otlphttp" }, config.service.pipelines.metrics.exporters)
  end)
end)
