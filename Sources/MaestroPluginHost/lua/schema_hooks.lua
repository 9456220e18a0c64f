-- Runs the `validate` hooks of a plugin's schema. The host checks a sink's config against the schema,
-- then calls the function this returns once per hook the config reaches, naming the rule by its keys
-- from the schema's root ({"sink", "fields", "tenant"}). A hook returns true (or nothing) to accept,
-- false or nil with a message to refuse; it may also call maestro.reject itself.
return function(schema)
  return function(keys, value, config)
    local rule = schema
    for i = 1, #keys do rule = rule[keys[i]] end
    local accepted, message = rule.validate(value, config)
    if accepted == false or (accepted == nil and message ~= nil) then
      if type(message) ~= "string" or message == "" then message = "is not valid" end
      return false, message
    end
    return true
  end
end
