-- The value codec: which values cross between the main state and worker states
-- ("Values that cross between states" in API.md), and how they look on the other
-- side. Every value goes main -> worker -> main; where it matters the worker also
-- checks what it received, so an error that is symmetric in both directions cannot
-- hide behind a round trip that looks right.
--
-- Must run under LuaJIT and Lua 5.4: 5.1 syntax only; integer subtypes are checked
-- through math.type where it exists.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local it_threads = helpers.threads_only(it, pending)

local mtype = math.type  -- nil on LuaJIT / 5.1

-- busted runs spec code under its own environment table. On LuaJIT that is the
-- functions' fenv, which the codec leaves behind (a function gets the receiving
-- state's globals). On Lua 5.4 it is the functions' _ENV upvalue, and the codec only
-- maps the main state's real globals table to the worker's globals: any other _ENV
-- is copied as a plain table without its metatable, so in the worker `string`,
-- `table`, ... would be nil (reported as a bug). globalize() gives every Lua
-- function reachable from a value the real globals as _ENV, as if it had been
-- written in an ordinary chunk; on LuaJIT it does nothing.
local REAL_G = mtype and debug.getregistry()[2] or nil
local MAIN_G = REAL_G or _G  -- the main state's globals table itself
local globals_cell
do
  local G = REAL_G
  globals_cell = function() return G end
end
local function globalize(v, seen)
  if not REAL_G then return v end
  seen = seen or {}
  -- the globals table itself crosses as the receiving state's globals: leave it be
  if (type(v) ~= "function" and type(v) ~= "table") or rawequal(v, REAL_G) or seen[v] then return v end
  seen[v] = true
  if type(v) == "table" then
    for k, x in next, v do globalize(k, seen); globalize(x, seen) end
  else
    local i = 1
    while true do
      local name, val = debug.getupvalue(v, i)
      if name == nil then break end
      if name == "_ENV" then debug.upvaluejoin(v, i, globals_cell, 1)
      else globalize(val, seen) end
      i = i + 1
    end
  end
  return v
end

local function is_neg_zero(x) return x == 0 and 1 / x == -math.huge end

-- Error tables raised by pool:run / task:get; anything else is a failure itself.
local catch = helpers.raised

-- Builds t[k][k]...[k] n levels deep with `leaf` at the bottom.
local function nest(n, key)
  local root = {}
  local t = root
  for _ = 1, n do
    local c = {}
    t[key] = c
    t = c
  end
  t.leaf = "bottom"
  return root
end

local function depth_of(t, key)
  local d = 0
  while type(t[key]) == "table" do t, d = t[key], d + 1 end
  return d, t.leaf
end

describe("codec", function()
  -- echo: returns the task value. apply: calls job.fn(unpack(job, 1, job.n)) in the
  -- worker, so functions travel inside task values (the pool-level handler itself is
  -- covered below). Both are pool-level handlers: one worker each, reused by all tests.
  local echo, apply

  setup(function()
    echo = luapool.new { handler = function(...) return ... end, minThreads = 1, maxThreads = 1 }
    apply = luapool.new {
      handler = globalize(function(job) return job.fn((table.unpack or unpack)(job, 1, job.n)) end),
      minThreads = 1, maxThreads = 1,
    }
  end)

  teardown(function()
    if echo then echo:destroy() end
    if apply then apply:destroy() end
  end)

  local function rt(v) return echo:run(globalize(v)):get() end
  -- Runs fn(...) in a worker and returns its results.
  local function call(fn, ...)
    return apply:run(globalize({ fn = fn, n = select("#", ...), ... })):get()
  end

  describe("scalars", function()
    it("nil crosses as one nil", function()
      assert.are.equal(1, select("#", rt(nil)))
      assert.is_nil(rt(nil))
      -- the handler gets exactly one argument, nil
      assert.are.same({ 1, "nil" }, { echo:run(nil, { handler = globalize(function(...)
        return select("#", ...), type((...))
      end) }):get() })
    end)

    it("booleans cross", function()
      assert.are.equal(true, rt(true))
      assert.are.equal(false, rt(false))
      assert.are.same({ "boolean", true, "boolean", false },
        { call(function(a, b) return type(a), a, type(b), b end, true, false) })
    end)

    it("integers and floats keep their values and, on 5.3+, their subtypes", function()
      local values = { 0, 1, -1, 7, 123456789, -987654321, 0.5, -2.25, 1e300, -1e-300,
                       5e-324, 3.141592653589793, 1 / 3 }
      for _, v in ipairs(values) do
        local r = rt(v)
        assert.are.equal("number", type(r))
        assert.are.equal(v, r)
        if mtype then assert.are.equal(mtype(v), mtype(r), "subtype of " .. tostring(v)) end
      end
      -- the worker sees the same values
      assert.are.equal(1 / 3, call(function(x) return x end, 1 / 3))
      assert.are.equal(6, call(function(a, b) return a * b end, 2, 3))
    end)

    it("integral floats stay floats and integers stay integers on 5.3+", function()
      if not mtype then
        -- LuaJIT has one number type: all that can be checked is the value
        assert.are.equal(1, rt(1.0))
        assert.are.equal(3, rt(3))
        return
      end
      local one_f = rt(1.0)
      assert.are.equal("float", mtype(one_f))
      assert.are.equal("1.0", tostring(one_f))
      assert.are.equal("integer", mtype(rt(1)))
      assert.are.equal("float", mtype(rt(-7.0)))
      assert.are.equal("float", mtype(rt(2 ^ 53)))
      assert.are.equal("integer", mtype(rt(math.tointeger(2 ^ 53))))
      -- and in the worker
      assert.are.same({ "float", "integer" },
        { call(function(a, b) return math.type(a), math.type(b) end, 1.0, 1) })
      -- the result of integer arithmetic in the worker comes back an integer
      local r = call(function(a, b) return a * b + 1 end, 7, 2)
      assert.are.equal(15, r)
      assert.are.equal("integer", mtype(r))
    end)

    it("keeps the sign of -0.0", function()
      local z = -0.0
      assert.is_true(is_neg_zero(z), "precondition: -0.0 literal")
      assert.is_true(is_neg_zero(rt(z)))
      assert.is_false(is_neg_zero(rt(tonumber("0"))))  -- 5.1 folds 0.0 and -0.0 into one constant
      assert.is_true(call(function(x) return x == 0 and 1 / x < 0 end, z))
      if mtype then assert.are.equal("float", mtype(rt(z))) end
    end)

    it("NaN crosses as NaN", function()
      local r = rt(0 / 0)
      assert.are.equal("number", type(r))
      assert.is_true(r ~= r)
      assert.is_true(call(function(x) return x ~= x end, 0 / 0))
    end)

    it("+inf and -inf cross", function()
      assert.are.equal(math.huge, rt(math.huge))
      assert.are.equal(-math.huge, rt(-math.huge))
      assert.are.same({ true, true },
        { call(function(a, b) return a == math.huge, b == -math.huge end, math.huge, -math.huge) })
    end)

    it("large integers around 2^31, 2^32 and 2^53 keep their exact values", function()
      local values = { 2 ^ 31 - 1, 2 ^ 31, 2 ^ 31 + 1, -2 ^ 31, -2 ^ 31 - 1, -2 ^ 31 + 1,
                       2 ^ 32 - 1, 2 ^ 32, 2 ^ 32 + 1, 2 ^ 52 + 1, 2 ^ 53, -2 ^ 53,
                       2 ^ 53 - 1, 2 ^ 63, -2 ^ 63, 2 ^ 64 }
      if mtype then  -- the same values as integers, where they fit
        for i = 1, #values do
          local int = math.tointeger(values[i])
          if int then values[#values + 1] = int end
        end
      end
      for _, v in ipairs(values) do
        local r = rt(v)
        assert.are.equal(v, r, string.format("%.17g", v))
        if mtype then assert.are.equal(mtype(v), mtype(r)) end
      end
      -- the worker can still do exact arithmetic on them
      assert.are.equal(2 ^ 31, call(function(x) return x + 1 end, 2 ^ 31 - 1))
      assert.are.equal(-2 ^ 31 - 1, call(function(x) return x - 1 end, -2 ^ 31))
      assert.are.equal(2 ^ 53, call(function(x) return x + 1 end, 2 ^ 53 - 1))
      if mtype then
        local r = call(function(x) return x + 1 end, math.tointeger(2 ^ 53))
        assert.are.equal("integer", mtype(r))
        assert.are.equal("9007199254740993", string.format("%d", r))  -- not a double
      end
    end)

    it("math.maxinteger and math.mininteger cross exactly (5.3+)", function()
      if not math.maxinteger then
        -- LuaJIT: the nearest doubles
        assert.are.equal(2 ^ 63 - 1024, rt(2 ^ 63 - 1024))
        return
      end
      local maxi, mini = math.maxinteger, math.mininteger
      assert.are.equal(maxi, rt(maxi))
      assert.are.equal(mini, rt(mini))
      assert.are.equal("integer", mtype(rt(maxi)))
      assert.are.equal("integer", mtype(rt(mini)))
      assert.are.equal(maxi - 1, rt(maxi - 1))
      assert.are.equal(mini + 1, rt(mini + 1))
      -- the worker sees exact values: wrap-around arithmetic proves it
      assert.are.same({ mini, maxi },
        { call(function(a, b) return a + 1, b - 1 end, maxi, mini) })
      assert.are.equal(string.format("%d", maxi),
        call(function(x) return string.format("%d", x) end, maxi))
    end)
  end)

  describe("strings", function()
    it("the empty string crosses", function()
      assert.are.equal("", rt(""))
      assert.are.equal(0, call(function(s) return #s end, ""))
    end)

    it("binary strings with embedded zeros and all 256 byte values cross intact", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local all = table.concat(bytes)
      assert.are.equal(all, rt(all))
      assert.are.equal("\0", rt("\0"))
      assert.are.equal("a\0b\0\0", rt("a\0b\0\0"))
      -- the worker sees exactly bytes 0..255 in order
      local seen = { call(function(s) return #s, s:byte(1, -1) end, all) }
      assert.are.equal(256, seen[1])
      for i = 0, 255 do assert.are.equal(i, seen[i + 2]) end
      -- and bytes made in the worker come back intact
      local made = call(function()
        local t = {}
        for i = 255, 0, -1 do t[#t + 1] = string.char(i) end
        return table.concat(t)
      end)
      assert.are.equal(all:reverse(), made)
    end)

    it("an 8 MiB string crosses both ways", function()
      local big = string.rep("\0\1\127\128\255luapool", math.floor(8 * 1024 * 1024 / 12)) .. string.rep("z", 8 * 1024 * 1024 % 12)
      assert.are.equal(8 * 1024 * 1024, #big)
      local n, head, tail, r = call(function(s) return #s, s:sub(1, 12), s:sub(-4), s end, big)
      assert.are.equal(#big, n)
      assert.are.equal("\0\1\127\128\255luapool", head)
      assert.are.equal("zzzz", tail)
      assert.is_true(r == big)
      -- made in the worker
      local w = call(function(k) return string.rep("ab\0", k) end, 3 * 1024 * 1024)
      assert.are.equal(9 * 1024 * 1024, #w)
      assert.is_true(w == string.rep("ab\0", 3 * 1024 * 1024))
    end)

    it("strings that look like numbers stay strings", function()
      assert.are.equal("string", type(rt("42")))
      assert.are.equal("1e3", rt("1e3"))
      assert.are.equal("string", call(function(s) return type(s) end, "0x10"))
    end)
  end)

  describe("tables", function()
    it("nested tables cross with their contents", function()
      local t = { 1, "two", { 3, { 4, { five = 5 } } }, name = "n", sub = { a = { b = { c = true } } },
                  list = { "x", "y", "z" }, empty = {} }
      assert.are.same(t, rt(t))
      assert.are.same({ true, 5, 3 },
        { call(function(x) return x.sub.a.b.c, x[3][2][2].five, #x.list end, t) })
      local r = rt(t)
      assert.are_not.equal(t, r)  -- a copy, not the same table
    end)

    it("arrays with holes keep every element at its index", function()
      local t = { 1, nil, 3, nil, 5 }
      t[10] = 10
      t[8] = false
      local r = rt(t)
      assert.are.equal(1, r[1]); assert.is_nil(r[2]); assert.are.equal(3, r[3])
      assert.is_nil(r[4]); assert.are.equal(5, r[5]); assert.is_nil(r[6])
      assert.are.equal(false, r[8]); assert.are.equal(10, r[10])
      local n = 0
      for _ in pairs(r) do n = n + 1 end
      assert.are.equal(5, n)
      -- sparse and non-positive integer keys
      local s = { [0] = "zero", [-1] = "minus", [1000000] = "million", [3] = "three" }
      assert.are.same(s, rt(s))
      assert.are.same({ "zero", "minus", "million" },
        { call(function(x) return x[0], x[-1], x[1000000] end, s) })
    end)

    it("# sees the same border on the other side, holes and all", function()
      local t = {}
      t.x, t[1] = 1, "a"  -- 1 in the hash part, after a string key
      local big = { 1 }
      big[100000] = 2     -- far past the border
      for _, c in ipairs({ { 1, nil, 3 }, { 1, 2, nil }, { nil, nil, 3 }, { [1] = 1, [5] = 5 },
                           { 1, 2, 3, x = 1, [4] = 4 }, t, big }) do
        local r = rt(c)
        assert.are.same(c, r)
        assert.are.equal(#c, #r)
        assert.are.equal(#c, call(function(x) return #x end, c))
      end
    end)

    it("mixed keys: floats, booleans, tables, strings and numbers that look alike", function()
      local tk = { id = "key table" }
      local t = { [1.5] = "float", [-0.25] = "negative float", [true] = "T", [false] = "F",
                  [tk] = "table key", [1] = "int one", ["1"] = "string one", [2 ^ 40] = "big",
                  [math.huge] = "inf" }
      local r = rt(t)
      assert.are.equal("float", r[1.5])
      assert.are.equal("negative float", r[-0.25])
      assert.are.equal("T", r[true])
      assert.are.equal("F", r[false])
      assert.are.equal("int one", r[1])
      assert.are.equal("string one", r["1"])
      assert.are.equal("big", r[2 ^ 40])
      assert.are.equal("inf", r[math.huge])
      local keys, rk = 0, nil
      for k, v in pairs(r) do
        keys = keys + 1
        if type(k) == "table" then rk = k; assert.are.equal("table key", v) end
      end
      assert.are.equal(9, keys)
      assert.are.same({ id = "key table" }, rk)
      assert.are_not.equal(tk, rk)
      -- the worker looks the keys up itself
      assert.are.same({ "float", "T", "F", "string one", "key table" },
        { call(function(x)
            local kt
            for k in pairs(x) do if type(k) == "table" then kt = k end end
            return x[1.5], x[true], x[false], x["1"], kt.id
          end, t) })
      if mtype then
        for k in pairs(r) do
          if k == 1.5 or k == -0.25 then assert.are.equal("float", mtype(k)) end
          if k == 1 then assert.are.equal("integer", mtype(k)) end
        end
      end
    end)

    it("keeps cycles (t.self = t)", function()
      local t = { name = "root", child = {} }
      t.self = t
      t.child.parent = t
      t.child.me = t.child
      local r = rt(t)
      assert.are.equal(r, r.self)
      assert.are.equal(r, r.child.parent)
      assert.are.equal(r.child, r.child.me)
      assert.are.equal("root", r.self.self.name)
      assert.are.same({ true, true, "root" },
        { call(function(x) return x.self == x, x.child.parent == x, x.self.child.parent.name end, t) })
      -- a cycle through the array part and through a key
      local a = {}
      a[1] = a
      a[a] = a
      local ra = rt(a)
      assert.are.equal(ra, ra[1])
      assert.are.equal(ra, ra[ra])
    end)

    it("keeps shared references: the same subtable twice stays one table", function()
      local s = { v = 1 }
      local t = { a = s, b = s, list = { s, s }, [s] = s }
      local r = rt(t)
      assert.are.equal(r.a, r.b)
      assert.are.equal(r.a, r.list[1])
      assert.are.equal(r.a, r.list[2])
      assert.are.equal(r.a, r[r.a])
      assert.are.equal(1, r.a.v)
      assert.are_not.equal(s, r.a)
      -- one table in the worker: a change through one path shows through the others
      assert.are.same({ 2, 2, 2 },
        { call(function(x) x.a.v = 2; return x.b.v, x.list[2].v, x[x.a].v end, t) })
      -- sharing across several return values
      local x, y, z = call(function(v) return v, v, { v } end, s)
      assert.are.equal(x, y)
      assert.are.equal(x, z[1])
    end)

    -- The encoder's map of tables grows while it holds some (a list of many records
    -- after a shared one) and is emptied between messages by a counter: a table of
    -- the last message must not be taken for one of this message.
    it("keeps shared references in long lists, message after message", function()
      local s = { v = 1 }
      local function list(n)
        local l = { s }
        for i = 2, n do l[i] = { i = i, s = s, name = "k" .. i % 7 } end
        l[n + 1] = l
        return l
      end
      for _, n in ipairs { 3000, 10, 20000, 3000 } do
        local l = list(n)
        local r = rt(l)
        assert.are.equal(n + 1, #r)
        assert.are.equal(r, r[n + 1])
        assert.are.equal(r[1], r[2].s)
        assert.are.equal(r[1], r[n].s)
        assert.are.equal(n, r[n].i)
        assert.are.equal("k" .. n % 7, r[n].name)
        assert.are_not.equal(r[2], r[3])
        -- the same tables again, in a new message: copies, not references to the last
        local r2 = rt({ l[2], l[2], s })
        assert.are.equal(r2[1], r2[2])
        assert.are_not.equal(r2[1], r2[3])
        assert.are.same({ i = 2, s = { v = 1 }, name = "k2" }, r2[1])
      end
    end)

    it("tables nested 5000 levels deep cross (through array slots)", function()
      local r = rt(nest(5000, 1))
      local d, leaf = depth_of(r, 1)
      assert.are.equal(5000, d)
      assert.are.equal("bottom", leaf)
      assert.are.same({ 5000, "bottom" }, { call(function(t)
        local n = 0
        while type(t[1]) == "table" do t, n = t[1], n + 1 end
        return n, t.leaf
      end, nest(5000, 1)) })
    end)

    -- Regression guard (failed on LuaJIT at a266e60): each level held two Lua stack
    -- slots while encoding, LuaJIT's C API allows 8000, so past ~3990 levels run
    -- raised serialize.
    it("tables nested 5000 levels deep cross (through string keys)", function()
      local ok, r = pcall(rt, nest(5000, "x"))
      assert.is_true(ok, ok or "run raised: " .. tostring(r and r.message):sub(1, 60) .. "...")
      local d, leaf = depth_of(r, "x")
      assert.are.equal(5000, d)
      assert.are.equal("bottom", leaf)
      -- made in the worker and sent back
      local ok2, w = pcall(call, function(n)
        local root = {}
        local t = root
        for _ = 1, n do t.x = {}; t = t.x end
        t.leaf = "bottom"
        return root
      end, 5000)
      assert.is_true(ok2, ok2 or "get raised: " .. tostring(w and w.message):sub(1, 60) .. "...")
      assert.are.same({ 5000, "bottom" }, { depth_of(w, "x") })
    end)

    it("metatables are not carried and metamethods are not called", function()
      local function boom() error("metamethod called") end
      local mt = { __index = boom, __newindex = boom, __len = boom, __pairs = boom,
                   __eq = boom, __tostring = function() return "proxy" end, __metatable = "locked" }
      local t = setmetatable({ x = 1, 10, 20 }, mt)
      local r = rt(t)
      assert.is_nil(getmetatable(r))
      assert.are.equal(1, rawget(r, "x"))
      assert.is_nil(r.y)  -- no __index on the copy
      assert.are.same({ x = 1, 10, 20 }, r)
      assert.are.same({ true, 1, 2 },
        { call(function(x) return getmetatable(x) == nil, x.x, #x end, t) })
      -- nested, and a metatable set in the worker does not come back
      local r2 = call(function() return setmetatable({ inner = setmetatable({}, { __mode = "k" }) }, { __index = string }) end)
      assert.is_nil(getmetatable(r2))
      assert.is_nil(getmetatable(r2.inner))
      assert.is_nil(r2.rep)
    end)
  end)

  -- Strings that repeat in a message (table keys, and other strings from their
  -- second time) cross once and then by number: every place must still get its own
  -- string, however many there are and wherever they are.
  describe("repeated strings", function()
    local long = string.rep("k", 60)  -- longer than a numbered string may be

    local function records(n)
      local r = {}
      for i = 1, n do
        r[i] = { id = i, name = "item" .. i, kind = "kind" .. (i % 3), tags = { "a", "b", "a" },
                 [long] = long, [i % 2 == 0 and "even" or "odd"] = "name" }
      end
      return r
    end

    it("records that repeat keys and values cross with each in its place", function()
      local r = records(3000)
      assert.are.same(r, rt(r))
      assert.are.same({ 3000, "item3000", "kind0", "a", long, "name", "name" },
        { call(function(x)
          return #x, x[3000].name, x[3000].kind, x[3000].tags[3], x[3000][long], x[3000].even, x[2999].odd
        end, r) })
    end)

    it("more distinct keys than a message numbers (4096) still cross", function()
      local t = {}
      for i = 1, 6000 do t["key" .. i] = { ["key" .. i] = i, v = "val" .. (i % 5), w = "val" .. (i % 5) } end
      assert.are.same(t, rt(t))
      assert.are.same({ 6000, "val0", "val0" },
        { call(function(x) return x.key6000.key6000, x.key5.v, x.key5.w end, t) })
    end)

    it("a string that is a key in one place and a value in others", function()
      local t = { name = "name", list = { "name", "id", "name" }, { id = "id", name = { name = "name" } } }
      assert.are.same(t, rt(t))
    end)

    it("a run's own handler and its task value number their strings together", function()
      local up = { alpha = "alpha", beta = { "beta", "beta" } }
      local ok, a, b, c, d = pcall(function()
        return echo:run({ alpha = "beta", beta = { alpha = "alpha" } }, {
          handler = globalize(function(x) return x.alpha, x.beta.alpha, up.alpha, up.beta[2] end),
        }):get()
      end)
      assert.is_true(ok, ok or tostring(a and a.message))
      assert.are.same({ "beta", "alpha", "alpha", "beta" }, { a, b, c, d })
    end)

    it("messages one after another each carry their own strings", function()
      for n = 1, 3 do
        local r = records(50 * n)
        assert.are.same(r, rt(r))
      end
      local ch = luapool.channel()
      ch:push({ x = "y", y = "x" })
      ch:push({ y = "y", x = "x" })
      assert.are.same({ x = "y", y = "x" }, ch:pop())
      assert.are.same({ y = "y", x = "x" }, ch:pop())
    end)
  end)

  describe("functions", function()
    it("carry their upvalues: numbers, strings, tables and other functions", function()
      local n, s, tbl = 5, "up", { 10, k = "v" }
      local function double(x) return x * 2 end
      local function f(x) return n + tbl[1] + double(x), s .. tbl.k end
      assert.are.same({ 21, "upv" }, { call(f, 3) })
      -- the upvalues are copies: changing them in the worker leaves ours alone
      local function bump() tbl[1] = tbl[1] + 1; n = n + 1; return tbl[1], n end
      assert.are.same({ 11, 6 }, { call(bump) })
      assert.are.equal(10, tbl[1])
      assert.are.equal(5, n)
    end)

    it("a recursive local function crosses and works in the worker", function()
      local function fib(k)
        if k < 2 then return k end
        return fib(k - 1) + fib(k - 2)
      end
      assert.are.equal(6765, call(fib, 20))
      -- as a run's own handler, too
      assert.are.equal(610, echo:run(15, { handler = globalize(fib) }):get())
      -- and back: the copy that returns still calls itself (a process worker's
      -- functions are not loaded: process_spec)
      if helpers.RUNTIME == "process" then return end
      local back = call(function(f) return f end, fib)
      assert.are_not.equal(fib, back)
      assert.are.equal(55, back(10))
    end)

    it("functions that use globals use the worker's globals", function()
      MAIN_G.LUAPOOL_CODEC_MARK = "main"
      local ok, rep, mark, pid = pcall(call, function(k)
        local luapool_w = require "luapool"
        return string.rep("ab", k), LUAPOOL_CODEC_MARK, luapool_w.isWorkerThread
      end, 3)
      MAIN_G.LUAPOOL_CODEC_MARK = nil
      assert.is_true(ok, tostring(rep))
      assert.are.equal("ababab", rep)
      assert.is_nil(mark)          -- the main state's global is not there
      assert.is_true(pid)          -- `require` is the worker's
      -- a global set by the worker stays in the worker
      call(function() LUAPOOL_CODEC_WORKER = true end)
      assert.is_nil(rawget(MAIN_G, "LUAPOOL_CODEC_WORKER"))
      assert.is_true(call(function() return LUAPOOL_CODEC_WORKER end))
      call(function() LUAPOOL_CODEC_WORKER = nil end)
      -- an upvalue holding _G becomes the worker's _G
      local G = MAIN_G
      assert.are.equal("xx", call(function() return G.string.rep("x", 2) end))
      assert.is_true(call(function() return G == _G and G.require("luapool").isWorkerThread end))
    end)

    it_threads("functions returned from a worker can be called on the main side", function()
      local counter = call(function(start)
        local c = start
        return function(d) c = c + d; return c end
      end, 10)
      assert.are.equal("function", type(counter))
      assert.are.equal(12, counter(2))
      assert.are.equal(15, counter(3))
      -- its globals are now ours
      MAIN_G.LUAPOOL_CODEC_MARK = "main"
      local g = call(function()
        local cache = { hits = 0 }
        return function() cache.hits = cache.hits + 1; return LUAPOOL_CODEC_MARK, string.upper("ok"), cache.hits end
      end)
      local a, b, c = g()
      MAIN_G.LUAPOOL_CODEC_MARK = nil
      assert.are.same({ "main", "OK", 1 }, { a, b, c })
      assert.are.equal(2, select(3, g()))
      -- and a function that went there and back still works
      local function add(x, y) return x + y end
      local back = rt(add)
      assert.are.equal(7, back(3, 4))
    end)

    it_threads("functions that share an upvalue table still share one table after crossing", function()
      local shared = { n = 0 }
      local function inc() shared.n = shared.n + 1; return shared.n end
      local function get() return shared end
      assert.are.same({ true, 1, 2, 2 }, { call(function(i, g)
        return g() == g(), i(), i(), g().n
      end, inc, get) })
      -- the same table as an upvalue and as a plain value in one task
      assert.is_true(call(function(t, g) return t == g() end, shared, get))
      -- and on the way back
      local i2, g2 = call(function(a, b) return a, b end, inc, get)
      assert.are.equal(1, i2())
      assert.are.equal(1, g2().n)
      assert.are.equal(0, shared.n)
      -- a function kept in the table it refers to
      local t = {}
      t.f = function() return t end
      local r = rt(t)
      assert.are.equal(r, r.f())
    end)
  end)

  describe("multiple values", function()
    it("keeps every return value, nils in the middle and at the end included", function()
      local function count(...) return select("#", ...), ... end
      assert.are.same({ 4, 1, nil, 3, nil }, { count(call(function() return 1, nil, 3, nil end)) })
      assert.are.equal(4, select("#", call(function() return 1, nil, 3, nil end)))
      assert.are.equal(3, select("#", call(function() return nil, nil, nil end)))
      assert.are.equal(0, select("#", call(function() end)))
      assert.are.equal(1, select("#", call(function() return nil end)))
      assert.are.same({ 6, "a", true, nil, 2.5, nil, false },
        { count(call(function(...) return ... end, "a", true, nil, 2.5, nil, false)) })
      local many = {}
      for i = 1, 200 do many[i] = i end
      assert.are.same(many, { call(function(n)
        local t = {}
        for i = 1, n do t[i] = i end
        return (table.unpack or unpack)(t, 1, n)
      end, 200) })
    end)

    -- Regression guard (failed on LuaJIT at a266e60): with ~7990 results the
    -- worker's encoding succeeded but decoding on the main side raised a stack
    -- overflow out of poll: get() raised a plain string, the task stayed "running"
    -- for ever and pool:wait() never returned.
    it("a task always settles, with its values or a luapool error, however many it returns", function()
      local pool = luapool.new { handler = globalize(function(n)
        local t = {}
        for i = 1, n do t[i] = i end
        return (table.unpack or unpack)(t, 1, n)
      end), minThreads = 1, maxThreads = 1 }
      local problems = {}
      for n = 7970, 8010, 4 do
        local task = pool:run(n)
        local ok, e = pcall(function() return select("#", task:get()) end)
        if ok then
          if e ~= n then problems[#problems + 1] = n .. ": got " .. tostring(e) .. " values" end
        elseif not luapool.isError(e) then
          problems[#problems + 1] = n .. ": non-luapool error " .. tostring(e)
        end
        local st = task:status()
        if st ~= "fulfilled" and st ~= "rejected" then
          problems[#problems + 1] = n .. ": task left " .. tostring(st)
        end
      end
      local drained = pool:wait(300)
      pool:destroy()
      assert.are.same({}, problems)
      assert.is_true(drained)
    end)
  end)

  describe("values that cannot cross", function()
    -- Checks that `run` raised serialize naming `path`, and that nothing was queued.
    local function refused(value, path, what)
      local before = echo.completed
      local e = catch(echo.run, echo, value)
      assert.are.equal("serialize", e.code)
      assert.are.equal(path .. ": a " .. what .. " cannot cross to another Lua state", e.message)
      assert.is_truthy(tostring(e):find("serialize", 1, true))
      assert.are.equal(0, echo.queueSize)
      assert.is_true(echo:wait(5000))
      assert.are.equal(before, echo.completed)  -- no task was made
      assert.are.equal("still works", rt("still works"))
      assert.are.equal(before + 1, echo.completed)
      return e
    end

    it("a coroutine as the task value", function()
      refused(coroutine.create(function() end), "task", "thread")
    end)

    it("a C function as the task value", function()
      refused(print, "task", "C function")
      refused(string.rep, "task", "C function")
    end)

    it("a userdata as the task value", function()
      refused(io.stdout, "task", "userdata")
    end)

    it("one deep inside a table, named by its path", function()
      local co = coroutine.create(function() end)
      refused({ list = { 1, co } }, "task.list[2]", "thread")
      refused({ a = { b = { { 1, 2, { x = print } } } } }, "task.a.b[1][3].x", "C function")
      refused({ ["not an identifier"] = { io.stderr } }, 'task["not an identifier"][1]', "userdata")
      refused({ [true] = co }, "task[true]", "thread")
      refused({ [1.5] = co }, "task[1.5]", "thread")
      refused({ [-3] = co }, "task[-3]", "thread")
    end)

    it("one used as a table key", function()
      local co = coroutine.create(function() end)
      local e = refused({ inner = { [co] = 1 } }, "task.inner[<thread>]", "thread")
      assert.is_truthy(e.message:find("task.inner", 1, true))
      refused({ [print] = true }, "task[<function>]", "C function")
      refused({ [io.stdout] = true }, "task[<userdata>]", "userdata")
    end)

    it("one held as an upvalue of a function", function()
      local co = coroutine.create(function() end)
      local function f() return co end
      local before = echo.completed
      local e = catch(echo.run, echo, { handler = f })
      assert.are.equal("serialize", e.code)
      assert.is_truthy(e.message:find("^task%.handler"), e.message)
      assert.is_truthy(e.message:find("co", 1, true), e.message)
      assert.is_truthy(e.message:find("a thread cannot cross to another Lua state", 1, true), e.message)
      -- a C function two closures down
      local w = io.write
      local function g() return w end
      local function h() return g end
      e = catch(echo.run, echo, h)
      assert.are.equal("serialize", e.code)
      assert.is_truthy(e.message:find("^task"), e.message)
      assert.is_truthy(e.message:find("a C function cannot cross", 1, true), e.message)
      -- as the run's own handler
      e = catch(echo.run, echo, 1, { handler = f })
      assert.are.equal("serialize", e.code)
      assert.is_truthy(e.message:find("^handler"), e.message)
      e = catch(echo.run, echo, 1, { handler = print })
      assert.are.equal("serialize", e.code)
      assert.are.equal(0, echo.queueSize)
      assert.is_true(echo:wait(5000))
      assert.are.equal(before, echo.completed)
      assert.are.equal(1, rt(1))
    end)

    it("a result that cannot cross rejects its task with serialize; the pool keeps working", function()
      local cases = {
        { function() return coroutine.create(function() end) end, "^result: a thread" },
        { function() return print end, "^result: a C function" },
        { function() return io.stdout end, "^result: a userdata" },
        { function() return 1, { a = { io.stderr } } end, "^result%[2%]%.a%[1%]: a userdata" },
        -- (a loaded module such as `string` would cross by name: this table is none)
        { function() local s = { f = print }; return function() return s end end,
          "^result%(upvalue s%)" },
      }
      for _, c in ipairs(cases) do
        local before = apply.completed
        local task = apply:run(globalize({ fn = c[1], n = 0 }))
        local e = catch(task.get, task)
        assert.are.equal("serialize", e.code)
        assert.is_truthy(e.message:find(c[2]), e.message)
        assert.are.equal("rejected", task:status())
        assert.are.equal(before + 1, apply.completed)
        assert.are.same({ "fine", 2 }, { call(function(x) return "fine", x end, 2) })
      end
    end)
  end)

  describe("pool-level options", function()
    it("the pool's handler crosses with its upvalues, recursion included", function()
      local offset = 100
      local names = { "zero", "one", "two" }
      local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end
      local calls = { n = 0 }
      local pool = luapool.new { minThreads = 1, maxThreads = 1, handler = globalize(function(n)
        calls.n = calls.n + 1
        return fact(n) + offset, names[n + 1] or "many", calls.n, string.format("%03d", n)
      end) }
      local ok, err = pcall(function()
        local a, b, c, d = pool:run(3):get()
        assert.are.same({ 106, "many", 1, "003" }, { a, b, c, d })
        a, b, c, d = pool:run(1):get()
        assert.are.same({ 101, "one", "001" }, { a, b, d })
        assert.is_true(c >= 1)  -- whether a worker keeps its copy between tasks is not specified
      end)
      pool:destroy()
      assert(ok, err)
      assert.are.equal(0, calls.n)  -- the worker had its own copy
    end)

    it("workerData crosses the same way and is readable in the worker", function()
      local shared = { 1, 2, 3 }
      local data = { name = "wd", n = 2 ^ 40, half = 0.5, blob = "a\0b", list = shared, again = shared,
                     [true] = "yes", fn = function(x) return x * 3 end }
      data.self = data
      local pool = luapool.new { minThreads = 1, maxThreads = 1, workerData = data, handler = globalize(function(k)
        local wd = require("luapool").workerData
        if k == "check" then
          return wd.name, wd.n, wd.half, wd.blob, #wd.list, wd.list == wd.again,
                 wd.self == wd, wd[true], wd.fn(7), getmetatable(wd) == nil
        end
        wd.list[1] = "changed in worker"
        wd.fn = nil  -- a process worker's functions do not come back
        return wd
      end) }
      local ok, err = pcall(function()
        assert.are.same({ "wd", 2 ^ 40, 0.5, "a\0b", 3, true, true, "yes", 21, true },
          { pool:run("check"):get() })
        local back = pool:run("mutate"):get()
        assert.are.equal("changed in worker", back.list[1])
        assert.are.equal(back.list, back.again)
        assert.are.equal(back, back.self)
        assert.are.equal(1, shared[1])  -- ours is untouched
        if mtype then assert.are.equal("float", mtype(back.n)) end
      end)
      pool:destroy()
      assert(ok, err)
      -- no workerData: nil in the worker; a scalar works too
      for _, v in ipairs({ false, 42, "s" }) do
        local p = luapool.new { minThreads = 1, maxThreads = 1, workerData = v,
                                handler = globalize(function() return require("luapool").workerData end) }
        local ok2, r = pcall(function() return p:run(nil):get() end)
        p:destroy()
        assert(ok2, tostring(r))
        assert.are.equal(v, r)
      end
      local p = luapool.new { minThreads = 1, maxThreads = 1,
                              handler = globalize(function() return require("luapool").workerData end) }
      local ok3, r = pcall(function() return p:run(nil):get() end)
      p:destroy()
      assert(ok3, tostring(r))
      assert.is_nil(r)
    end)

    it("a handler or workerData that cannot cross makes luapool.new raise serialize", function()
      local co = coroutine.create(function() end)
      local e = catch(luapool.new, { minThreads = 1, maxThreads = 1, handler = function() return co end })
      assert.are.equal("serialize", e.code)
      assert.is_truthy(e.message:find("^handler"), e.message)
      assert.is_truthy(e.message:find("a thread cannot cross", 1, true), e.message)
      e = catch(luapool.new, { minThreads = 1, maxThreads = 1, handler = function() end,
                               workerData = { x = { 1, io.stdout } } })
      assert.are.equal("serialize", e.code)
      assert.are.equal("workerData.x[2]: a userdata cannot cross to another Lua state", e.message)
      e = catch(luapool.new, { minThreads = 1, maxThreads = 1, handler = function() end, workerData = print })
      assert.are.equal("serialize", e.code)
      assert.are.equal("workerData: a C function cannot cross to another Lua state", e.message)
    end)

    -- Regression guard (failed at a266e60): pool:submit encoded the run's handler
    -- and the task value in two passes, each numbering its tables and functions
    -- from 0, but the worker decoded them in one pass, so references in the task
    -- value pointed at the wrong objects: "corrupt value buffer", or silently a
    -- wrong value (the handler's upvalue function instead of a shared table).
    it("a run's own handler does not disturb cycles and shared tables in the task value", function()
      local t = { name = "t" }
      t.self = t
      local ok, r = pcall(function()
        return echo:run(t, { handler = globalize(function(x) return x.self == x, x.self.name end) }):get()
      end)
      assert.is_true(ok, ok or tostring(r and r.message))
      local s = {}
      local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
      local ok2, a, b, c = pcall(function()
        return echo:run({ s, s }, { handler = globalize(function(x) return type(x[2]), x[1] == x[2], fib(10) end) }):get()
      end)
      assert.is_true(ok2, ok2 or tostring(a and a.message))
      assert.are.same({ "table", true, 55 }, { a, b, c })
    end)
  end)
end)
