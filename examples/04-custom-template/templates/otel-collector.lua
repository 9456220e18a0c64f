-- A user template: the shipped one (copied next to this file as otel-collector-base.lua) plus a
-- log-forwarding sidecar in every collector pod. Resources and nodeSelector are values the shipped
-- template already has; maestro.yaml sets them.
local base = require "otel-collector-base"

local fields = {}
for name, field in pairs(base.values.fields) do fields[name] = field end
fields.sidecar_image = { type = "string", default = "fluent/fluent-bit:3.0.7", description = "Image of the log-forwarding sidecar." }
fields.sidecar_destination = { type = "nonblank", required = true, description = "host:port the sidecar forwards the collector's logs to." }

local template = {
  name = "otel-collector",
  version = base.version .. "+sidecar",
  values = { fields = fields },
}

function template.render(values)
  local objects = base.render(values)
  for _, object in ipairs(objects) do
    if object.kind == "Deployment" then
      local pod = object.spec.template.spec
      local host, port = values.sidecar_destination:match("^([^:]+):(%d+)$")
      if host == nil then error("sidecar_destination must be host:port, got " .. values.sidecar_destination) end
      pod.containers[#pod.containers + 1] = {
        name = "log-forwarder",
        image = values.sidecar_image,
        args = { "-i", "tail", "-p", "path=/var/log/containers/*" .. values.collector_name .. "*.log",
                 "-o", "forward", "-p", "host=" .. host, "-p", "port=" .. port },
        resources = { requests = { cpu = "10m", memory = "16Mi" }, limits = { memory = "64Mi" } },
      }
    end
  end
  return objects
end

return template
