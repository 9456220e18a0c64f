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

  local auth = { type = "basicauth", username = "u", password = "p" }

  it("builds a pipeline per signal the sink asks for, each from its own topic", function()
    local config = spec.build({ exporter = { endpoint = "https://otlp.example" }, authentication = auth, signals = { "logs", "traces" } },
      { sink_id = "s7" })
    assert.same({ "kafka/logs" }, config.service.pipelines.logs.receivers)
    assert.same({ "kafka/traces" }, config.service.pipelines.traces.receivers)
    assert.is_nil(config.service.pipelines.metrics)
    assert.equals("otlp_logs-s7", config.receivers["kafka/logs"].topic)
    assert.equals("otlp_spans-s7", config.receivers["kafka/traces"].topic)
    assert.same({ "otlphttp" }, config.service.pipelines.traces.exporters)
  end)

  it("keeps Orb's metrics-only config when the sink names no signals", function()
    local config = spec.build({ exporter = { endpoint = "https://otlp.example" }, authentication = auth }, { sink_id = "s7" })
    assert.same({ "metrics" }, (function() local names = {} for name in pairs(config.service.pipelines) do names[#names + 1] = name end return names end)())
    assert.equals("otlp_metrics-s7", config.receivers.kafka.topic)
  end)

  it("refuses an unknown or repeated signal as the user's mistake", function()
    assert.same({ nil, "signals[1] must be one of metrics, logs, traces" },
      { spec.validate({ exporter = { endpoint = "https://o" }, authentication = auth, signals = { "profiles" } }) })
    assert.same({ nil, "signals names logs twice" },
      { spec.build({ exporter = { endpoint = "https://o" }, authentication = auth, signals = { "logs", "logs" } }) })
    assert.same({ nil, "signals must have at least 1 item" },
      { spec.validate({ exporter = { endpoint = "https://o" }, authentication = auth, signals = {} }) })
  end)
end)
