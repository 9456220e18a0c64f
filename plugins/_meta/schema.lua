---@meta
-- LuaCATS classes of a plugin's schema.lua, for editors (lua-language-server). Not loaded by maestro,
-- which checks the same rules when it loads a plugin (`maestro plugins lint`: unknown keys are errors
-- with file:line). Annotate your schema to get completion and checks:
--
--   ---@type maestro.Schema
--   local schema = { name = "mybackend", ... }
--   return schema
--
-- Keep in step with docs/plugins.md ("schema.lua") and Sources/MaestroCore/Sinks/ConfigSchema.swift.

---@alias maestro.FieldType "string"|"nonblank"|"word"|"url"|"integer"|"number"|"boolean"|"map"|"list"|"string_map"|"any"

---@class maestro.Schema
---@field name string                       the folder's name
---@field version? string
---@field description? string
---@field binds? maestro.Binds              what the plugin handles
---@field sink? maestro.FieldSet            rules of a sink's config (backend plugins)
---@field settings? maestro.FieldSet        rules of the plugin's settings (config file, plugins: {<name>: ...})
---@field capabilities? string[]            "sinks:read", "collectors:read", "http:<host>", "http:*"
---@field metrics? table<string, maestro.MetricDeclaration>  metrics the plugin updates with maestro.metrics

---@class maestro.Binds
---@field sink_backend? string              events of sinks with this backend come to on_sink_create/on_sink_update
---@field collector_status? true            collector status changes come to on_collector_status

---@class maestro.FieldSet
---@field fields table<string, maestro.FieldRule>

---@class maestro.FieldRule
---@field type maestro.FieldType
---@field required? boolean
---@field default? any                      checked against this rule when the plugin loads
---@field description? string
---@field secret? boolean                   a credential: masked wherever maestro shows config
---@field validate? fun(value: any, config: table): boolean|nil, string?  sink fields only: return true, or false and a message
---@field pattern? string                   strings: a Lua pattern the value must match (anchor with ^ and $)
---@field one_of? string[]                  strings: the allowed values
---@field enum? string[]                    strings: the older name of one_of
---@field min_length? integer               strings: in characters
---@field max_length? integer               strings: in characters
---@field min? number                       integer, number
---@field max? number                       integer, number
---@field items? maestro.FieldRule          list: the rule of every item
---@field min_items? integer                list
---@field max_items? integer                list
---@field fields? table<string, maestro.FieldRule>  map: its fields
---@field variants? maestro.Variants        map: fields chosen by the value of one of them
---@field forbidden_keys? string[]          string_map: keys refused, case-insensitively

---@class maestro.Variants
---@field by string                         the field whose value chooses the case
---@field cases table<string, table<string, maestro.FieldRule>>

---@class maestro.MetricDeclaration
---@field type "counter"|"gauge"|"histogram"
---@field help string
---@field labels? string[]                  label names; every update gives a value for each
---@field max_label_values? integer         distinct label-value sets kept (default 100, at most 1000)
---@field buckets? number[]                 histogram bucket bounds
