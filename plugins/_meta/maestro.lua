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
