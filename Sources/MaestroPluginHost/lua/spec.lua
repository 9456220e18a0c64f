-- The prelude of `maestro plugins test`: a small busted-like API (describe, it, assert) and `spec`, the
-- helpers that run the host's real path (maestro.spec.*, present in plugin specs). Runs before the spec
-- file; the host seals the globals once the spec file has loaded, as `maestro run` does after
-- handler.lua, so a case that assigns a global fails as the plugin would in production.
local cases, prefix = {}, {}
local function location()
  local _, where = pcall(error, "", 4)
  return (where:gsub(":%s*$", ""))
end
function describe(name, body)
  prefix[#prefix + 1] = name
  body()
  prefix[#prefix] = nil
end
function it(name, body)
  cases[#cases + 1] = { name = table.concat(prefix, " ") .. (#prefix > 0 and " " or "") .. name, body = body, where = location() }
end
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
local function show(v)
  if type(v) == "table" then return maestro.json.encode(v) or "<table>" end
  return tostring(v)
end
local checks = {}
function checks.equals(expected, actual) if expected ~= actual then error("expected " .. show(expected) .. ", got " .. show(actual), 2) end end
function checks.same(expected, actual) if not same(expected, actual) then error("expected " .. show(expected) .. ", got " .. show(actual), 2) end end
function checks.is_true(value, message) if value ~= true then error(message or ("expected true, got " .. show(value)), 2) end end
function checks.is_nil(value) if value ~= nil then error("expected nil, got " .. show(value), 2) end end
function checks.has_error(fn, pattern)
  local ok, err = pcall(fn)
  if ok then error("expected an error", 2) end
  if pattern and not tostring(err):find(pattern) then error("error " .. tostring(err) .. " does not match " .. pattern, 2) end
end
assert = setmetatable(checks, { __metatable = false, __call = function(_, value, message, ...) if not value then error(message or "assertion failed", 2) end return value, message, ... end })
spec = maestro.spec
function __spec_count() return #cases end
function __spec_case(i) return cases[i].name, cases[i].where end
function __spec_run(i) cases[i].body() end
return true
