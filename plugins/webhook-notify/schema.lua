return {
  name = "webhook-notify",
  version = "1.0.0",
  description = "An ops hook: POSTs a JSON notification to a webhook when a collector's status changes to one of the chosen states.",
  binds = { collector_status = true },
  -- It calls the URL its settings name: whatever host the operator grants (http:<host>, which must also
  -- be on --http-allow-host).
  capabilities = { "http:*" },
  settings = {
    fields = {
      url = { type = "url", description = "The webhook. Its host must be on --http-allow-host and granted (grants: [http:<host>]). Unset: the hook does nothing." },
      statuses = { type = "list", default = { "error", "provisioning_error" }, description = "States that notify." },
      headers = { type = "string_map", description = "Extra request headers (e.g. an auth header)." },
      timeout_ms = { type = "integer", default = 3000, description = "Request timeout." },
    },
  },
}
