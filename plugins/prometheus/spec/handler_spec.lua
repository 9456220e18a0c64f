local handler = require "prometheus.handler"

local settings = {
  topic_prefix = "otlp_metrics-", protocol_version = "2.0.0",
  health_check_endpoint = "0.0.0.0:13133", pprof_endpoint = "0.0.0.0:1888",
}

local function sink(config)
  return { id = "sink-id-11", owner_id = "o", backend = "prometheus", config = config, settings = settings, kafka_url = "kafka:9092" }
end

describe("prometheus", function()
  it("builds Orb's collector config with basic auth", function()
    local config = handler.on_sink_create(sink({
      exporter = { remote_host = "https://acme.com/prom/push" },
      authentication = { type = "basicauth", username = "prom-user", password = "dbpass" },
    }))
    local exporter = config.exporters.prometheusremotewrite
    assert.equals("https://acme.com/prom/push", exporter.endpoint)
    assert.equals("basicauth/exporter", exporter.auth.authenticator)
    assert.same({ username = "prom-user", password = "dbpass" }, config.extensions["basicauth/exporter"].client_auth)
    assert.same({ "kafka:9092" }, config.receivers.kafka.brokers)
    assert.equals("otlp_metrics-sink-id-11", config.receivers.kafka.topic)
    assert.same({ "pprof", "health_check", "basicauth/exporter" }, config.service.extensions)
  end)

  it("uses a bearer token with its scheme", function()
    local config = handler.on_sink_create(sink({
      exporter = { remote_host = "https://acme.com/prom/push" },
      authentication = { type = "bearertokenauth", scheme = "Api-Token", token = "abcdefg" },
    }))
    assert.same({ scheme = "Api-Token", token = "abcdefg" }, config.extensions["bearertokenauth/withscheme"])
    assert.equals("bearertokenauth/withscheme", config.exporters.prometheusremotewrite.auth.authenticator)
  end)

  it("adds headers only when there are some", function()
    local with = handler.on_sink_create(sink({
      exporter = { remote_host = "https://a/b", headers = { ["X-Scope-OrgID"] = "TENANT_1" } },
      authentication = { type = "basicauth", username = "u", password = "p" },
    }))
    assert.same({ ["X-Scope-OrgID"] = "TENANT_1" }, with.exporters.prometheusremotewrite.headers)
    local without = handler.on_sink_create(sink({
      exporter = { remote_host = "https://a/b" },
      authentication = { type = "basicauth", username = "u", password = "p" },
    }))
    assert.is_nil(without.exporters.prometheusremotewrite.headers)
  end)

  it("updates build the same config", function()
    assert.equals(handler.on_sink_create, handler.on_sink_update)
  end)
end)
