-- patterns.lua seen from inside the sandbox. A pattern with a quantifier on a short subject runs in the
-- native matcher; on a subject of a few hundred bytes its worst case passes the native bound and the
-- same call runs in Lua. Each case is checked both ways, so both implementations give these answers.

local padding = string.rep(" ", 400)

-- Runs body(prefix, shift) twice: with no prefix, then with the padding, which shifts every position.
local function both(body)
  body("", 0)
  body(padding, #padding)
end

describe("patterns", function()
  it("find returns positions and captures", function()
    both(function(pad, shift)
      assert.same({ 1 + shift, 9 + shift, "key", "value" }, { string.find(pad .. "key=value", "(%w+)=(%w+)") })
      assert.same({ 4 + shift, 4 + shift }, { (pad .. "key=value"):find("=", 1, true) })
      assert.is_nil(string.find(pad .. "abc", "%d+"))
      assert.same({ 2 + shift, 3 + shift, 3 + shift }, { string.find(pad .. "xab", "a()b") })
    end)
  end)

  it("match honours anchors, classes, sets and lazy quantifiers", function()
    both(function(pad)
      assert.equals("2026", string.match(pad .. "year 2026!", "%d+"))
      assert.equals("<a>", string.match(pad .. "<a><b>", "<.->"))
      assert.equals("<a><b>", string.match(pad .. "<a><b>", "<.*>"))
      assert.equals("b-c", string.match(pad .. "a:b-c;", ":([%a%-]+);"))
      assert.equals("x", string.match(pad .. "x", "^%s*(%S)$"))
      assert.equals("(x(y))", string.match(pad .. "f(x(y)) z", "%b()"))
      assert.same({ "abab", "ab" }, { string.match(pad .. "--abab--", "((ab)%2)") })
      assert.equals("THE", string.match(pad .. "the THE", "%f[%u]%u+"))
    end)
  end)

  it("gmatch iterates over every match", function()
    both(function(pad)
      local words = {}
      for word in string.gmatch(pad .. "one two  three", "%a+") do words[#words + 1] = word end
      assert.same({ "one", "two", "three" }, words)
      local pairs_found = {}
      for k, v in (pad .. "a=1, b=2"):gmatch("(%w+)=(%w+)") do pairs_found[#pairs_found + 1] = k .. v end
      assert.same({ "a1", "b2" }, pairs_found)
    end)
  end)

  it("gsub replaces with a string, a table or a function, up to a count", function()
    both(function(pad)
      assert.same({ pad .. "hello hello world", 1 }, { string.gsub(pad .. "hello world", "(%w+)", "%1 %1", 1) })
      assert.same({ pad .. "1-2", 2 }, { string.gsub(pad .. "a-b", "%a", { a = 1, b = 2 }) })
      assert.same({ pad .. "A-b", 2 }, { string.gsub(pad .. "a-b", "%a", function(c) if c == "a" then return "A" end end) })
      assert.same({ pad .. "[a%]", 1 }, { string.gsub(pad .. "a", "%a+", "[%0%%]") })
    end)
  end)

  it("reports a malformed pattern the same way", function()
    both(function(pad)
      assert.has_error(function() string.find(pad .. "aaa", "a*%") end, "malformed pattern %(ends with '%%'%)")
      assert.has_error(function() string.match(pad .. "aaa", "a*[b") end, "malformed pattern %(missing ']'%)")
      assert.has_error(function() string.gsub(pad .. "aaa", "a*", "%2") end, "invalid capture index %%2")
    end)
    assert.has_error(function() string.gsub("a", "a", true) end, "bad argument #3 to 'gsub' %(string/function/table expected, got boolean%)")
  end)

  it("answers from a start position on a long subject, where three quantifiers put it past the native bound", function()
    local subject = string.rep("a", 2000)
    assert.is_nil(string.find(subject, ".-.-.-b", 1990))
    assert.same({ "aaaaaa", "b" }, { string.match(subject .. "b", "(a-)(b)", 1995) })
  end)
end)
