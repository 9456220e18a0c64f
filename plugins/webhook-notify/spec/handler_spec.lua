local handler = require "webhook-notify.handler"

local event = { sink_id = "s1", owner_id = "o", status = "error", error_message = "HTTP 401", timestamp = "2026-01-01T00:00:00Z" }

describe("webhook-notify", function()
  it("does nothing without a url", function()
    handler.on_collector_status(event, { statuses = { "error" }, timeout_ms = 1000 })
  end)

  it("ignores states it does not watch", function()
    handler.on_collector_status({ sink_id = "s1", status = "active" }, { url = "https://hooks.example.com/x", statuses = { "error" }, timeout_ms = 1000 })
  end)

  it("maestro.http refuses a host that is not allow-listed", function()
    local response, err = maestro.http.request { url = "https://hooks.example.com/x" }
    assert.is_nil(response)
    assert.is_true(err:find("allow%-list") ~= nil, err)
  end)
end)
