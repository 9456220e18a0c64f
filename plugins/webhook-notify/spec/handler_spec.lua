local handler = require "webhook-notify.handler"

local event = { sink_id = "s1", owner_id = "o", status = "error", error_message = "HTTP 401", timestamp = "2026-01-01T00:00:00Z" }

describe("webhook-notify", function()
  -- Nothing is allow-listed in specs, so any request the handler makes fails with an allow-list
  -- refusal: a handler that returns without error made no request.
  local watched = { url = "https://hooks.example.com/x", statuses = { "error" }, timeout_ms = 1000 }

  it("posts a watched status (the request is made, and refused here)", function()
    assert.has_error(function() handler.on_collector_status(event, watched) end, "allow%-list")
  end)

  it("does nothing without a url", function()
    local ok, err = pcall(handler.on_collector_status, event, { statuses = { "error" }, timeout_ms = 1000 })
    assert.is_true(ok, "made a request: " .. tostring(err))
  end)

  it("ignores states it does not watch", function()
    local ok, err = pcall(handler.on_collector_status, { sink_id = "s1", status = "active" }, watched)
    assert.is_true(ok, "made a request: " .. tostring(err))
  end)

  it("maestro.http refuses a host that is not allow-listed", function()
    local response, err = maestro.http.request { url = "https://hooks.example.com/x" }
    assert.is_nil(response)
    assert.is_true(err:find("allow%-list") ~= nil, err)
  end)
end)
