-- A plugin's schema as data the host can convert: every field rule's `validate` function becomes
-- `true` (a marker: the host calls the function itself, through schema_hooks.lua), and any other
-- function, or a `validate` that is not a function, is reported as `problem` (the path and why).
-- Tables without a function inside are kept as they are, so maestro.empty_map() stays an empty map.
return function(schema)
  local problem
  local function visit(value, path, depth)
    if problem ~= nil then return value end
    local kind = type(value)
    if kind == "function" then
      problem = { path = path, message = "is a function; only a field rule's validate may be one" }
      return value
    end
    if kind ~= "table" then return value end
    if depth > 64 then
      problem = { path = path, message = "nests more than 64 tables deep (a table that contains itself?)" }
      return value
    end
    -- A field rule is a table with a string `type`; a field may itself be named validate.
    local is_rule = type(rawget(value, "type")) == "string"
    local copy, changed = {}, false
    for key, item in next, value do
      local item_path = path == "" and tostring(key) or (path .. "." .. tostring(key))
      local converted
      if is_rule and key == "validate" then
        if type(item) ~= "function" then
          problem = { path = item_path, message = "must be a function(value, config)" }
          return value
        end
        converted = true
      else
        converted = visit(item, item_path, depth + 1)
      end
      copy[key] = converted
      if converted ~= item then changed = true end
    end
    if changed then return copy end
    return value
  end
  local data = visit(schema, "", 0)
  return { data = data, problem = problem }
end
