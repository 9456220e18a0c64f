local handler = {}

local function wanted(statuses, status)
  for _, candidate in ipairs(statuses) do
    if candidate == status then return true end
  end
  return false
end

-- event: sink_id, owner_id, status, error_message, timestamp; settings: this plugin's settings.
function handler.on_collector_status(event, settings)
  if settings.url == nil or not wanted(settings.statuses, event.status) then return end
  local headers = { ["Content-Type"] = "application/json" }
  for name, value in pairs(settings.headers or {}) do headers[name] = value end
  local response, err = maestro.http.request {
    method = "POST",
    url = settings.url,
    headers = headers,
    body = maestro.json.encode({
      text = "maestro: sink " .. event.sink_id .. " is " .. event.status,
      sink_id = event.sink_id,
      owner_id = event.owner_id,
      status = event.status,
      error_message = event.error_message,
      timestamp = event.timestamp,
    }),
    timeout_ms = settings.timeout_ms,
  }
  if response == nil then
    -- A refused destination will not get better: fail for good; anything else is retried.
    if err:find("refused") or err:find("allow%-list") then maestro.fail(err) end
    error(err)
  end
  if response.status >= 500 then error("webhook answered " .. response.status) end
  maestro.log.info("webhook notified", { ["sink.id"] = event.sink_id, status = event.status, ["http.status"] = response.status })
end

return handler
