---@meta
-- LuaCATS annotations of maestro's host API, for editors (lua-language-server). Not loaded by maestro.
-- Keep in step with docs/lua-api.md.

---@alias maestro.Value nil|boolean|integer|number|string|table|lightuserdata

---@class maestro
maestro = {}

--- A sentinel for null (tables cannot hold nil). YAML/JSON null decode to it.
---@type lightuserdata
maestro.null = nil

--- A new empty table that converts to an empty map (`{}`), where a plain `{}` is an empty list.
---@return table
function maestro.empty_map() end

---@class maestro.log
maestro.log = {}

--- Logs at trace level. Fields whose key contains password/token/secret/authorization are masked.
---@param message string
---@param fields? table<string, any>
function maestro.log.trace(message, fields) end

---@param message string
---@param fields? table<string, any>
function maestro.log.debug(message, fields) end

---@param message string
---@param fields? table<string, any>
function maestro.log.info(message, fields) end

---@param message string
---@param fields? table<string, any>
function maestro.log.warn(message, fields) end

---@param message string
---@param fields? table<string, any>
function maestro.log.error(message, fields) end

---@class maestro.yaml
maestro.yaml = {}

--- Emits YAML (block style, keys sorted, strings quoted when needed).
---@param value maestro.Value
---@return string|nil text
---@return string|nil err
function maestro.yaml.encode(value) end

--- Parses one YAML document (YAML 1.2 core schema).
---@param text string
---@return maestro.Value|nil value
---@return string|nil err
function maestro.yaml.decode(text) end

--- Parses every document of a multi-document stream.
---@param text string
---@return maestro.Value[]|nil documents
---@return string|nil err
function maestro.yaml.decode_all(text) end

---@class maestro.json
maestro.json = {}

--- Emits compact JSON with sorted keys.
---@param value maestro.Value
---@return string|nil text
---@return string|nil err
function maestro.json.encode(value) end

--- Parses JSON; null becomes maestro.null.
---@param text string
---@return maestro.Value|nil value
---@return string|nil err
function maestro.json.decode(text) end

--- A terminal failure: the event is dead-lettered at once; no pcall catches it.
---@param message string
function maestro.fail(message) end

--- The sink's config is the user's mistake: provisioning_error with "path message", the last good config stays.
--- Only in a sink backend's handler or a schema validate hook; no pcall can catch it.
---@param path string  the field, e.g. "exporter.tenant"; "" for the whole config
---@param message string
function maestro.reject(path, message) end

---@class maestro.Context
---@field plugin string
---@field event_id string
---@field deliveries integer
---@field sink_id string
---@field owner_id string
---@field operation string

--- The current invocation (replaced before each handler call).
---@type maestro.Context
maestro.ctx = nil

---@class maestro.redis
maestro.redis = {}

---@param key string
---@return string|nil value
---@return string|nil err
function maestro.redis.get(key) end

---@param key string
---@param value string
---@param options? {px: integer}
---@return string|nil ok
---@return string|nil err
function maestro.redis.set(key, value, options) end

---@param key string
---@return integer|nil removed
---@return string|nil err
function maestro.redis.del(key) end

--- A field of this plugin's hashes, or the current sink's entry of the sinks/config/deployment hashes
--- (another sink's entry needs the capability sinks:read).
---@param key string
---@param field string
---@return string|nil value
---@return string|nil err
function maestro.redis.hget(key, field) end

---@param key string
---@param field string
---@param value string
---@return integer|nil added
---@return string|nil err
function maestro.redis.hset(key, field, value) end

---@param key string
---@param field string
---@return integer|nil removed
---@return string|nil err
function maestro.redis.hdel(key, field) end

---@param stream string
---@param fields table<string, string>
---@param options? {maxlen: integer}
---@return string|nil id
---@return string|nil err
function maestro.redis.xadd(stream, fields, options) end

---@class maestro.Sink
---@field id string
---@field owner_id string
---@field backend string
---@field config table
---@field settings table
---@field kafka_url string

---@class maestro.template
maestro.template = {}

--- Renders another template of the templates folder (templates only).
---@param name string
---@param values table
---@return table[] objects
function maestro.template.render(name, values) end

---@class maestro.http
maestro.http = {}

---@class maestro.HTTPResponse
---@field status integer
---@field headers table<string, string>
---@field body string

--- An HTTP request to an allow-listed host granted to this plugin (capability http:<host>; never link-local or
--- cloud metadata; no redirects).
---@param request {url: string, method?: string, headers?: table<string, string>, body?: string, timeout_ms?: integer}
---@return maestro.HTTPResponse|nil response
---@return string|nil err
function maestro.http.request(request) end

---@class maestro.k8s
maestro.k8s = {}

--- A managed object of the collector namespace, or nil: this plugin's own or the current sink's collector
--- (any other needs the capability collectors:read).
---@param kind string  "Deployment", "apps/v1/Deployment", …
---@param name string
---@return table|nil object
---@return string|nil err
function maestro.k8s.get(kind, name) end

--- The objects of a kind this plugin may read (all of them with collectors:read).
---@param kind string
---@param options? {label_selector: string}
---@return table[]|nil objects
---@return string|nil err
function maestro.k8s.list(kind, options) end

--- Queues a server-side apply, carried out after the handler returns without error; the object is labelled
--- as this plugin's, and only this plugin's objects may be replaced (names starting otel- are the collectors').
---@param object table
---@return boolean queued
function maestro.k8s.apply(object) end

--- Queues a delete of an object this plugin applied, carried out after the handler returns without error.
---@param kind string
---@param name string
---@return boolean queued
function maestro.k8s.delete(kind, name) end

---@class maestro.metrics
maestro.metrics = {}

--- Adds n (default 1) to a counter or gauge declared in schema.lua (metrics = {...}).
--- Returns nil, err when the metric already holds max_label_values label-value sets.
---@param name string
---@param labels? table<string, string>  a value for every declared label
---@param n? number
---@return boolean|nil ok
---@return string|nil err
function maestro.metrics.inc(name, labels, n) end

--- Sets a gauge declared in schema.lua.
---@param name string
---@param labels? table<string, string>
---@param value number
---@return boolean|nil ok
---@return string|nil err
function maestro.metrics.set(name, labels, value) end

--- Records a value in a histogram declared in schema.lua.
---@param name string
---@param labels? table<string, string>
---@param value number
---@return boolean|nil ok
---@return string|nil err
function maestro.metrics.observe(name, labels, value) end

--- In specs (maestro plugins test) only: the host's real path for the plugin under test.
---@class maestro.spec
spec = {}

---@class maestro.SpecOptions
---@field sink_id? string
---@field owner_id? string
---@field operation? "create"|"update"
---@field kafka_url? string

--- The schema and its validate hooks: the checked config with defaults, or nil and the rejection's message.
---@param config table
---@param options? maestro.SpecOptions
---@return table|nil config
---@return string|nil message
function spec.validate(config, options) end

--- Schema, hooks, handler and YAML, as the pipeline runs them: the stored config and its YAML, or nil and the
--- rejection's message. A plugin failure raises.
---@param config table
---@param options? maestro.SpecOptions
---@return table|nil collector
---@return string yaml_or_message
function spec.build(config, options) end

--- spec.build, then the collector template: the Kubernetes objects, or nil and the rejection's message.
---@param config table
---@param options? maestro.SpecOptions
---@return table[]|nil objects
---@return string|nil message
function spec.render(config, options) end

--- What this spec file's calls recorded with maestro.metrics (a histogram: {count, sum}); nil if never updated.
---@param name string
---@param labels? table<string, string>
---@return number|{count: integer, sum: number}|nil
function spec.metric(name, labels) end
