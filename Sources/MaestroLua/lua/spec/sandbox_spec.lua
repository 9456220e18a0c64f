-- sandbox.lua seen from inside: what a plugin finds in its globals, and what it cannot change.

describe("sandbox globals", function()
  it("offers none of the unsafe standard library", function()
    for _, name in ipairs({ "io", "debug", "dofile", "loadfile", "package" }) do
      assert.is_nil(_G[name])
    end
    assert.is_nil(os.execute)
    assert.is_nil(os.exit)
    assert.is_nil(os.getenv)
    assert.is_nil(string.dump)
    assert.equals("function", type(os.time))
    assert.equals("Lua 5.4", _VERSION)
  end)

  it("hides the string metatable", function()
    assert.equals(false, getmetatable(""))
    assert.equals("ABC", ("abc"):upper())
  end)

  it("keeps the library tables read-only", function()
    assert.has_error(function() string.upper = nil end, "attempt to modify read%-only table 'string' %(field 'upper'%)")
    assert.has_error(function() table[1] = true end, "attempt to modify read%-only table 'table' %(field '<number>'%)")
    assert.has_error(function() rawset(math, "pi", 3) end, "rawset: attempt to modify a read%-only table")
    assert.equals(false, getmetatable(string))
  end)

  it("refuses finalizers", function()
    assert.has_error(function() setmetatable({}, { __gc = function() end }) end, "__gc metamethods are not available")
    assert.equals(1, setmetatable({}, { __index = function() return 1 end }).anything)
  end)

  it("loads text chunks only, in its environment or the one given", function()
    local chunk, message = load("\27Lua", "binary", "b")
    assert.is_nil(chunk)
    assert.equals("load: only text chunks are allowed in the sandbox (mode \"t\")", message)
    assert.equals(3, load("return 1 + 2")())
    assert.equals("from env", load("return value", "=given", "t", { value = "from env" })())
    local pieces = { "return ", "'read'" }
    assert.equals("read", load(function() return table.remove(pieces, 1) end)())
  end)

  it("lets collectgarbage only count", function()
    assert.equals(0, collectgarbage())
    assert.equals(0, collectgarbage("step"))
    assert.equals("number", type(collectgarbage("count")))
    assert.has_error(function() collectgarbage("stop") end, "collectgarbage: option 'stop' is not available in the sandbox")
  end)
end)

describe("sandbox table functions", function()
  -- A table with a metatable goes through the Lua versions in sandbox.lua; a plain one through C.
  local function proxied(items) return setmetatable(items, { __name = "proxied" }) end

  it("insert and remove like the standard library, with or without a metatable", function()
    for _, make in ipairs({ function(t) return t end, proxied }) do
      local t = make({ "a", "c" })
      table.insert(t, 2, "b")
      table.insert(t, "d")
      assert.same({ "a", "b", "c", "d" }, { t[1], t[2], t[3], t[4] })
      assert.equals("a", table.remove(t, 1))
      assert.equals("d", table.remove(t))
      assert.same({ "b", "c" }, { t[1], t[2], t[3] })
      assert.has_error(function() table.insert(t, 9, "x") end, "bad argument #2 to 'insert' %(position out of bounds%)")
      -- Not the argument's number: Lua 5.4.4's C remove says #1 here, sandbox.lua's version #2.
      assert.has_error(function() table.remove(t, 9) end, "to 'remove' %(position out of bounds%)")
      assert.has_error(function() table.insert(t, 1.5, "x") end, "number has no integer representation")
    end
  end)

  it("sorts with or without a metatable, with or without a comparator", function()
    for _, make in ipairs({ function(t) return t end, proxied }) do
      local t = make({ 3, 1, 2 })
      table.sort(t)
      assert.same({ 1, 2, 3 }, { t[1], t[2], t[3] })
      table.sort(t, function(a, b) return a > b end)
      assert.same({ 3, 2, 1 }, { t[1], t[2], t[3] })
    end
  end)

  it("keeps concat, unpack, move and pack", function()
    assert.equals("a,b", table.concat({ "a", "b" }, ","))
    assert.same({ 1, 2 }, { table.unpack({ 1, 2 }) })
    assert.same({ 1, 1, 2 }, table.move({ 1, 2 }, 1, 2, 2))
    assert.equals(2, table.pack("x", "y").n)
    assert.equals("aaa", string.rep("a", 3))
    assert.equals("\u{48}i", utf8.char(72, 105))
  end)
end)

describe("sandbox coroutines", function()
  it("wraps and resumes", function()
    local generate = coroutine.wrap(function() coroutine.yield(1) coroutine.yield(2) end)
    assert.equals(1, generate())
    assert.equals(2, generate())
    local co = coroutine.create(function(x) return x * 2 end)
    assert.same({ true, 10 }, { coroutine.resume(co, 5) })
    assert.equals("dead", coroutine.status(co))
  end)
end)
