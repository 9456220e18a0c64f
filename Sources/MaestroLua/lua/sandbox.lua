local G, host = ...  -- The sandbox prelude: see README.md beside this file (its line numbers show in errors: keep them).
local real_load, real_setmetatable, real_getmetatable = G.load, G.setmetatable, G.getmetatable
local real_rawset, real_type, real_error, real_select = G.rawset, G.type, G.error, G.select
local next, pairs, tostring = G.next, G.pairs, G.tostring
-- Everything used after this chunk returns is captured here: the global table is emptied at the end.
local real_rawget, real_collectgarbage = G.rawget, G.collectgarbage

local function describe_key(key)
  if real_type(key) == "string" then return key end
  return "<" .. real_type(key) .. ">"
end

-- A read-only view of a table: reads pass through, writes raise, the metatable is hidden.
local function readonly(tbl, name)
  return real_setmetatable({}, {
    __index = tbl,
    __newindex = function(_, key)
      real_error("attempt to modify read-only table '" .. name .. "' (field '" .. describe_key(key) .. "')", 2)
    end,
    __pairs = function() return next, tbl, nil end,
    __len = function() return #tbl end,
    __metatable = false,
  })
end

local function copy(tbl, names)
  local result = {}
  for _, name in G.ipairs(names) do result[name] = tbl[name] end
  return result
end

-- The string metatable is shared by every string; hide it so that no plugin can change
-- string methods for later calls.
real_getmetatable("").__metatable = false

-- The pattern functions with a step bound (patterns.lua), for string.* and for string methods.
local patterns = real_load(host.patterns_source, "=patterns", "t")(G, host)
for _, name in G.ipairs({ "find", "match", "gmatch", "gsub" }) do G.string[name] = patterns[name] end

-- C functions whose work grows with their arguments, charged to the instruction budget by that work
-- (allocation is charged by the allocator, so these are the loops that allocate nothing). The charged
-- versions are C (lua_shim.h, host.charged); where the work depends on a length that a __len
-- metamethod could report differently when asked again, a table with a metatable is handled by the
-- Lua versions below instead, where the count hook sees every step.
local charged, charge, tointeger, log = host.charged, host.charge, G.math.tointeger, G.math.log

local function integer_argument(value, position, name)
  local n = tointeger(value)
  if n == nil then
    real_error("bad argument #" .. position .. " to '" .. name .. "' (number has no integer representation)", 3)
  end
  return n
end

local function insert_counted(t, pos, value)
  local e = #t + 1
  pos = integer_argument(pos, 2, "insert")
  if pos < 1 or pos > e then real_error("bad argument #2 to 'insert' (position out of bounds)", 2) end
  for i = e, pos + 1, -1 do t[i] = t[i - 1] end
  t[pos] = value
end

local function remove_counted(t, ...)
  local size = #t
  local pos = ...
  if pos == nil then pos = size else pos = integer_argument(pos, 2, "remove") end
  if pos ~= size and (pos < 1 or pos > size + 1) then
    real_error("bad argument #2 to 'remove' (position out of bounds)", 2)
  end
  local result = t[pos]
  while pos < size do
    t[pos] = t[pos + 1]
    pos = pos + 1
  end
  t[pos] = nil
  return result
end

local real_sort = G.table.sort
-- A table with a metatable is sorted as a plain copy: every read and write is counted here.
local function sort_counted(t, comp)
  local n = #t
  local items = {}
  for k = 1, n do items[k] = t[k] end
  if comp == nil and n > 1 then charge(tointeger(n * (log(n, 2) + 1) // 1) or n) end
  real_sort(items, comp)
  for k = 1, n do t[k] = items[k] end
end

G.string.rep = charged("rep", G.string.rep)
G.string.byte = charged("byte", G.string.byte)
G.string.char = charged("char", G.string.char)
local utf8_lib = copy(G.utf8, { "charpattern", "codepoint", "codes", "len", "offset" })
utf8_lib.char = charged("char", G.utf8.char)
local table_lib = {
  insert = charged("insert", G.table.insert, insert_counted), remove = charged("remove", G.table.remove, remove_counted),
  move = charged("move", G.table.move), concat = charged("concat", G.table.concat), unpack = charged("unpack", G.table.unpack),
  sort = charged("sort", real_sort, sort_counted), pack = G.table.pack,
}

local string_lib = copy(G.string, {
  "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match", "pack", "packsize",
  "rep", "reverse", "sub", "unpack", "upper",
})
local coroutine_lib = copy(G.coroutine, { "isyieldable", "running", "status", "yield" })
coroutine_lib.create = host.charge_coroutine(G.coroutine.create)
coroutine_lib.wrap = host.charge_coroutine(G.coroutine.wrap)
coroutine_lib.resume = host.guard_results(G.coroutine.resume)
coroutine_lib.close = host.guard_results(G.coroutine.close)

local base = {}
local env_meta = { __index = base, __metatable = false }
local env = real_setmetatable({}, env_meta)

local function sandbox_load(chunk, chunkname, mode, ...)
  if mode ~= nil and mode ~= "t" then
    return nil, "load: only text chunks are allowed in the sandbox (mode \"t\")"
  end
  -- Compiling reads every byte, allocating nothing for comments and blanks: charged by the byte.
  if real_type(chunk) == "string" then
    charge(#chunk // 2)
  elseif real_type(chunk) == "function" then
    local reader = chunk
    chunk = function()
      local piece = reader()
      if real_type(piece) == "string" then charge(#piece // 2) end
      return piece
    end
  end
  local chunk_env = env
  if real_select("#", ...) > 0 then chunk_env = ... end
  return real_load(chunk, chunkname, "t", chunk_env)
end

local loaded = {}
local function sandbox_require(name)
  if real_type(name) ~= "string" then
    real_error("bad argument #1 to 'require' (string expected, got " .. real_type(name) .. ")", 2)
  end
  local cached = loaded[name]
  if cached ~= nil then return cached end
  local source, chunkname = host.read_module(name)
  if source == nil then real_error(chunkname, 2) end
  local chunk, message = real_load(source, chunkname, "t", env)
  if chunk == nil then real_error(message, 2) end
  local result = chunk(name)
  if result == nil then result = true end
  loaded[name] = result
  return result
end

local function sandbox_setmetatable(tbl, meta)
  if real_type(meta) == "table" and real_rawget(meta, "__gc") ~= nil then
    real_error("setmetatable: __gc metamethods are not available in the sandbox", 2)
  end
  return real_setmetatable(tbl, meta)
end

local function sandbox_rawset(tbl, key, value)
  if real_getmetatable(tbl) == false then
    real_error("rawset: attempt to modify a read-only table", 2)
  end
  return real_rawset(tbl, key, value)
end

local function sandbox_collectgarbage(option, ...)
  if option == nil or option == "collect" or option == "step" then return 0 end
  if option == "count" or option == "isrunning" then return real_collectgarbage(option) end
  real_error("collectgarbage: option '" .. tostring(option) .. "' is not available in the sandbox", 2)
end

for _, name in G.ipairs({
  "assert", "error", "ipairs", "next", "pairs", "rawequal", "rawget", "rawlen", "select",
  "tonumber", "tostring", "type", "_VERSION",
}) do base[name] = G[name] end
base.getmetatable = real_getmetatable
base.setmetatable = sandbox_setmetatable
base.rawset = sandbox_rawset
base.pcall = host.pcall
base.xpcall = host.xpcall
base.load = sandbox_load
base.require = sandbox_require
base.collectgarbage = sandbox_collectgarbage
base.print = host.print
base.string = readonly(string_lib, "string")
if host.expose_lua_patterns then base.lua_patterns = patterns.lua end
base.table = readonly(table_lib, "table")
base.math = readonly(G.math, "math")
base.utf8 = readonly(utf8_lib, "utf8")
base.coroutine = readonly(coroutine_lib, "coroutine")
base.os = readonly(copy(G.os, { "clock", "date", "time" }), "os")
base._G = env
-- Strings index the real string table; it now lacks dump as well.
G.string.dump = nil

local control = {}
control.env = env
control.readonly = readonly

-- Adds a host-provided global (such as `maestro`) before any plugin code runs.
function control.install(name, value)
  base[name] = value
end

-- Globals become read-only: existing names move behind the proxy, new names raise.
function control.seal()
  if env_meta.__newindex ~= nil then return end
  local backing = {}
  for key, value in next, env do backing[key] = value end
  for key in next, backing do real_rawset(env, key, nil) end
  real_setmetatable(backing, { __index = base })
  env_meta.__index = backing
  env_meta.__newindex = function(_, key)
    real_error("attempt to set global '" .. describe_key(key) .. "' after load: globals are read-only", 2)
  end
end

-- Compiles host-read source (a plugin file) as a text chunk in the sandbox environment.
function control.compile(source, chunkname)
  return real_load(source, chunkname, "t", env)
end

-- Nothing of the unrestricted library stays reachable from the globals.
for key in next, G do G[key] = nil end
return control
