local G, host = ...  -- string.find/match/gmatch/gsub with a step bound: see README.md beside this file.
local native = { find = G.string.find, match = G.string.match, gmatch = G.string.gmatch, gsub = G.string.gsub }
local byte, sub, char, concat = G.string.byte, G.string.sub, G.string.char, G.table.concat
local type, error, tostring, tointeger, unpack = G.type, G.error, G.tostring, G.math.tointeger, G.table.unpack
local charge, budget_left = host.charge, host.budget_left

-- The native matcher runs when its worst case is at most this many steps (charged as instructions).
local NATIVE_STEPS = 100000
local MAXCCALLS = 200
local CAP_UNFINISHED, CAP_POSITION = -1, -2
local PERCENT, LBRACKET, RBRACKET, CARET, DOLLAR, DOT = 37, 91, 93, 94, 36, 46
local LPAREN, RPAREN, STAR, PLUS, MINUS, QUESTION = 40, 41, 42, 43, 45, 63

-- C-locale character classes of one byte.
local function class_of(c, letter)
  local lower = letter | 32
  local result
  if lower == 97 then result = (c >= 65 and c <= 90) or (c >= 97 and c <= 122)               -- %a
  elseif lower == 99 then result = c < 32 or c == 127                                            -- %c
  elseif lower == 100 then result = c >= 48 and c <= 57                                          -- %d
  elseif lower == 103 then result = c >= 33 and c <= 126                                         -- %g
  elseif lower == 108 then result = c >= 97 and c <= 122                                         -- %l
  elseif lower == 112 then                                                                       -- %p
    result = c >= 33 and c <= 126 and not ((c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122))
  elseif lower == 115 then result = c == 32 or (c >= 9 and c <= 13)                              -- %s
  elseif lower == 117 then result = c >= 65 and c <= 90                                          -- %u
  elseif lower == 119 then result = (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) -- %w
  elseif lower == 120 then result = (c >= 48 and c <= 57) or (c >= 65 and c <= 70) or (c >= 97 and c <= 102) -- %x
  else return letter == c end
  if letter < 97 then return not result end
  return result
end

local function pattern_error(message) error("malformed pattern (" .. message .. ")", 0) end

-- Index just after the single-character class starting at p.
local function class_end(ms, p)
  local pat, plen = ms.pat, ms.plen
  local c = byte(pat, p)
  p = p + 1
  if c == PERCENT then
    if p > plen then pattern_error("ends with '%'") end
    return p + 1
  elseif c == LBRACKET then
    if byte(pat, p) == CARET then p = p + 1 end
    repeat
      if p > plen then pattern_error("missing ']'") end
      local d = byte(pat, p)
      p = p + 1
      if d == PERCENT and p <= plen then p = p + 1 end
    until byte(pat, p) == RBRACKET
    return p + 1
  end
  return p
end

-- c in the set [ ... ] that spans pattern indexes p ('[') to last (']').
local function in_set(pat, c, p, last)
  local wanted = true
  if byte(pat, p + 1) == CARET then
    wanted = false
    p = p + 1
  end
  p = p + 1
  while p < last do
    local d = byte(pat, p)
    if d == PERCENT then
      p = p + 1
      if class_of(c, byte(pat, p)) then return wanted end
      p = p + 1
    elseif byte(pat, p + 1) == MINUS and p + 2 < last then
      if d <= c and c <= byte(pat, p + 2) then return wanted end
      p = p + 3
    else
      if d == c then return wanted end
      p = p + 1
    end
  end
  return not wanted
end

local function single_match(ms, s, p, ep)
  if s > ms.slen then return false end
  local c = byte(ms.src, s)
  local d = byte(ms.pat, p)
  if d == DOT then return true end
  if d == PERCENT then return class_of(c, byte(ms.pat, p + 1)) end
  if d == LBRACKET then return in_set(ms.pat, c, p, ep - 1) end
  return d == c
end

local do_match

local function max_expand(ms, s, p, ep)
  local i = 0
  while single_match(ms, s + i, p, ep) do i = i + 1 end
  while i >= 0 do
    local result = do_match(ms, s + i, ep + 1)
    if result then return result end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, s, p, ep)
  while true do
    local result = do_match(ms, s, ep + 1)
    if result then return result end
    if single_match(ms, s, p, ep) then s = s + 1 else return nil end
  end
end

local function start_capture(ms, s, p, what)
  local level = ms.level + 1
  ms.init[level], ms.len[level] = s, what
  ms.level = level
  local result = do_match(ms, s, p)
  if not result then ms.level = ms.level - 1 end
  return result
end

local function end_capture(ms, s, p)
  local level
  for l = ms.level, 1, -1 do
    if ms.len[l] == CAP_UNFINISHED then level = l break end
  end
  if not level then error("invalid pattern capture", 0) end
  ms.len[level] = s - ms.init[level]
  local result = do_match(ms, s, p)
  if not result then ms.len[level] = CAP_UNFINISHED end
  return result
end

local function match_balance(ms, s, p)
  if p + 1 > ms.plen then pattern_error("missing arguments to '%b'") end
  if s > ms.slen or byte(ms.src, s) ~= byte(ms.pat, p) then return nil end
  local open, close = byte(ms.pat, p), byte(ms.pat, p + 1)
  local depth = 1
  s = s + 1
  while s <= ms.slen do
    local c = byte(ms.src, s)
    if c == close then
      depth = depth - 1
      if depth == 0 then return s + 1 end
    elseif c == open then
      depth = depth + 1
    end
    s = s + 1
  end
  return nil
end

local function match_capture(ms, s, digit)
  local l = digit - 48
  if l < 1 or l > ms.level or ms.len[l] == CAP_UNFINISHED then error("invalid capture index %" .. l, 0) end
  local length = ms.len[l]
  -- The comparison copies and compares `length` bytes in C, out of the hook's sight: charged by the byte
  -- (else "^(.-)%1b" on a long subject does quadratic work for a linear count).
  if length > 32 then charge(length // 8) end
  if ms.slen - s + 1 >= length and sub(ms.src, ms.init[l], ms.init[l] + length - 1) == sub(ms.src, s, s + length - 1) then
    return s + length
  end
  return nil
end

do_match = function(ms, s, p)
  ms.depth = ms.depth + 1
  if ms.depth > MAXCCALLS then error("pattern too complex", 0) end
  local pat, plen = ms.pat, ms.plen
  local result
  while true do
    if p > plen then result = s break end
    local c = byte(pat, p)
    if c == LPAREN then
      if byte(pat, p + 1) == RPAREN then result = start_capture(ms, s, p + 2, CAP_POSITION)
      else result = start_capture(ms, s, p + 1, CAP_UNFINISHED) end
      break
    elseif c == RPAREN then
      result = end_capture(ms, s, p + 1)
      break
    elseif c == DOLLAR and p == plen then
      if s == ms.slen + 1 then result = s end
      break
    end
    local d = byte(pat, p + 1)
    if c == PERCENT and d == 98 then                                   -- %b
      s = match_balance(ms, s, p + 2)
      if not s then break end
      p = p + 4
    elseif c == PERCENT and d == 102 then                              -- %f
      p = p + 2
      if byte(pat, p) ~= LBRACKET then error("missing '[' after '%f' in pattern", 0) end
      local ep = class_end(ms, p)
      local previous = s == 1 and 0 or byte(ms.src, s - 1)
      local current = s <= ms.slen and byte(ms.src, s) or 0
      if in_set(pat, previous, p, ep - 1) or not in_set(pat, current, p, ep - 1) then break end
      p = ep
    elseif c == PERCENT and d and d >= 48 and d <= 57 then             -- back-reference
      s = match_capture(ms, s, d)
      if not s then break end
      p = p + 2
    else
      local ep = class_end(ms, p)
      local quantifier = byte(pat, ep)
      if not single_match(ms, s, p, ep) then
        if quantifier == STAR or quantifier == QUESTION or quantifier == MINUS then
          p = ep + 1
        else
          break
        end
      elseif quantifier == QUESTION then
        result = do_match(ms, s + 1, ep + 1)
        if result then break end
        p = ep + 1
      elseif quantifier == PLUS then
        result = max_expand(ms, s + 1, p, ep)
        break
      elseif quantifier == STAR then
        result = max_expand(ms, s, p, ep)
        break
      elseif quantifier == MINUS then
        result = min_expand(ms, s, p, ep)
        break
      else
        s = s + 1
        p = ep
      end
    end
  end
  ms.depth = ms.depth - 1
  return result
end

local function capture(ms, i, s, e)
  if i > ms.level then
    if i == 1 then return sub(ms.src, s, e - 1) end
    error("invalid capture index %" .. i, 0)
  end
  local length = ms.len[i]
  if length == CAP_UNFINISHED then error("unfinished capture", 0) end
  if length == CAP_POSITION then return ms.init[i] end
  return sub(ms.src, ms.init[i], ms.init[i] + length - 1)
end

local function captures(ms, s, e, whole_if_none)
  local count = (ms.level == 0 and whole_if_none) and 1 or ms.level
  local values = {}
  for i = 1, count do values[i] = capture(ms, i, s, e) end
  return unpack(values, 1, count)
end

local function state(src, pat)
  return { src = src, slen = #src, pat = pat, plen = #pat, level = 0, depth = 0, init = {}, len = {} }
end

local function start_position(init, length)
  init = init or 1
  if init > 0 then return init end
  if init == 0 or init < -length then return 1 end
  return length + init + 1
end

local function checked_string(value, position, name)
  local kind = type(value)
  if kind == "number" then return tostring(value) end
  if kind ~= "string" then
    error("bad argument #" .. position .. " to '" .. name .. "' (string expected, got " .. (value == nil and "no value" or kind) .. ")", 3)
  end
  return value
end

local function lua_find(s, p, init, find)
  local ms = state(s, p)
  local s1 = start_position(init, ms.slen)
  if s1 > ms.slen + 1 then return nil end
  local anchored = byte(p, 1) == CARET
  local first = anchored and 2 or 1
  repeat
    ms.level, ms.depth = 0, 0
    local e = do_match(ms, s1, first)
    if e then
      if find then return s1, e - 1, captures(ms, nil, nil, false) end
      return captures(ms, s1, e, true)
    end
    s1 = s1 + 1
  until anchored or s1 > ms.slen + 1
  return nil
end

local function lua_gmatch(s, p, init)
  local ms = state(s, p)
  local src = start_position(init, ms.slen)
  if src > ms.slen + 1 then src = ms.slen + 1 end
  local last
  return function()
    while src <= ms.slen + 1 do
      ms.level, ms.depth = 0, 0
      local e = do_match(ms, src, 1)
      if e and e ~= last then
        local from = src
        src, last = e, e
        return captures(ms, from, e, true)
      end
      src = src + 1
    end
    return nil
  end
end

local function add_value(ms, out, s, e, repl, kind)
  local whole = sub(ms.src, s, e - 1)
  local value
  if kind == "function" then
    value = repl(captures(ms, s, e, true))
  elseif kind == "table" then
    value = repl[capture(ms, 1, s, e)]
  else
    local i, parts = 1, {}
    while i <= #repl do
      local c = byte(repl, i)
      if c == PERCENT then
        i = i + 1
        local d = byte(repl, i)
        if d == PERCENT then parts[#parts + 1] = "%"
        elseif d and d >= 48 and d <= 57 then
          parts[#parts + 1] = d == 48 and whole or tostring(capture(ms, d - 48, s, e))
        else
          error("invalid use of '%' in replacement string", 0)
        end
      else
        parts[#parts + 1] = char(c)
      end
      i = i + 1
    end
    out[#out + 1] = concat(parts)
    return
  end
  if value == nil or value == false then
    out[#out + 1] = whole
  elseif type(value) == "string" or type(value) == "number" then
    out[#out + 1] = tostring(value)
  else
    error("invalid replacement value (a " .. type(value) .. ")", 0)
  end
end

local function lua_gsub(s, p, repl, max_n)
  local kind = type(repl)
  if kind == "number" then repl, kind = tostring(repl), "string" end
  local ms = state(s, p)
  local anchored = byte(p, 1) == CARET
  local first = anchored and 2 or 1
  local limit = max_n or ms.slen + 1
  local src, last, n, out = 1, nil, 0, {}
  while n < limit do
    ms.level, ms.depth = 0, 0
    local e = do_match(ms, src, first)
    if e and e ~= last then
      n = n + 1
      add_value(ms, out, src, e, repl, kind)
      src, last = e, e
    elseif src <= ms.slen then
      out[#out + 1] = sub(ms.src, src, src)
      src = src + 1
    else
      break
    end
    if anchored then break end
  end
  out[#out + 1] = sub(ms.src, src)
  return concat(out), n
end

-- The native matcher's worst case: each quantifier, %b or back-reference can multiply the steps by the
-- subject's length; every start position may be tried.
local function worst_case(p, n, anchored)
  local multipliers, i, m = 0, 1, #p
  while i <= m do
    local c = byte(p, i)
    if c == PERCENT then
      local d = byte(p, i + 1)
      if d == 98 or (d and d >= 48 and d <= 57) then multipliers = multipliers + 1 end
      i = i + 2
    else
      if c == STAR or c == PLUS or c == MINUS or c == QUESTION then multipliers = multipliers + 1 end
      i = i + 1
    end
  end
  local steps = (n + 2) ^ multipliers * (m + 1)
  if not anchored then steps = steps * (n + 1) end
  return steps, multipliers
end

-- Whether the native function may run, charging its worst case if so.
local function native_allowed(p, n, anchored)
  local steps, multipliers = worst_case(p, n, anchored)
  -- Linear patterns (no multiplier) cost what the bound says: native while the budget lasts.
  if steps <= NATIVE_STEPS or (multipliers == 0 and steps <= budget_left()) then
    charge(tointeger(steps // 1) or 0)
    return true
  end
  return false
end

local functions = {}

function functions.find(s, p, init, plain)
  s, p = checked_string(s, 1, "find"), checked_string(p, 2, "find")
  if plain or not native.find(p, "[%^%$%*%+%?%.%(%)%[%]%%%-]") then
    -- A plain search compares at most (subject × pattern) bytes, often far fewer: charged per 16.
    charge((#s + 1) * (#p + 1) // 16)
    return native.find(s, p, init, plain)
  end
  if native_allowed(p, #s, byte(p, 1) == CARET) then return native.find(s, p, init) end
  return lua_find(s, p, init, true)
end

function functions.match(s, p, init)
  s, p = checked_string(s, 1, "match"), checked_string(p, 2, "match")
  if native_allowed(p, #s, byte(p, 1) == CARET) then return native.match(s, p, init) end
  return lua_find(s, p, init, false)
end

function functions.gmatch(s, p, init)
  s, p = checked_string(s, 1, "gmatch"), checked_string(p, 2, "gmatch")
  if native_allowed(p, #s, false) then return native.gmatch(s, p, init) end
  return lua_gmatch(s, p, init)
end

function functions.gsub(s, p, repl, max_n)
  s, p = checked_string(s, 1, "gsub"), checked_string(p, 2, "gsub")
  local kind = type(repl)
  if kind ~= "string" and kind ~= "number" and kind ~= "table" and kind ~= "function" then
    error("bad argument #3 to 'gsub' (string/function/table expected, got " .. (repl == nil and "no value" or kind) .. ")", 2)
  end
  if native_allowed(p, #s, byte(p, 1) == CARET) then return native.gsub(s, p, repl, max_n) end
  return lua_gsub(s, p, repl, max_n)
end

-- For the tests: the Lua implementation itself.
functions.lua = { find = function(s, p, init) return lua_find(s, p, init, true) end,
                  match = function(s, p, init) return lua_find(s, p, init, false) end,
                  gmatch = lua_gmatch, gsub = lua_gsub, worst_case = worst_case }
return functions
