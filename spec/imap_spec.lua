-- pool:imap, the streaming map (issue 8), and map's err.index.
local helpers = require "spec.support.helpers"
local luapool = require "luapool"

local scope = helpers.scope()
after_each(scope.cleanup)
local new_pool = scope.new_pool

local function double(x)
  if x == "boom" then error("boom on purpose") end
  return x * 2
end

-- A source function over 1..n that counts how many inputs were taken.
local function counter(n)
  local c = { pulled = 0 }
  function c.next()
    if c.pulled >= n then return nil end
    c.pulled = c.pulled + 1
    return c.pulled
  end
  return c
end

local function collect(pool, src, opts)
  local out, errs, order = {}, {}, {}
  for i, v, e in pool:imap(src, opts) do
    order[#order + 1] = i
    if e then errs[i] = e else out[i] = v end
  end
  return out, errs, order
end

describe("pool:imap", function()
  it("maps a list, in input order, yielding index and value", function()
    local pool = new_pool { handler = double, maxThreads = 2 }
    local out, errs, order = collect(pool, { 1, 2, 3, 4, 5, 6, 7 })
    assert.are.same({ 2, 4, 6, 8, 10, 12, 14 }, out)
    assert.are.same({}, errs)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7 }, order)
  end)

  it("maps an iterator function until it returns nil", function()
    local pool = new_pool { handler = double, maxThreads = 2 }
    local c = counter(10000)
    local sum, last = 0, 0
    for i, v in pool:imap(c.next) do
      assert.are.equal(last + 1, i)
      last = i
      sum = sum + v
    end
    assert.are.equal(10000, last)
    assert.are.equal(10000 * 10001, sum)
  end)

  it("runs a task file's function, by the pool's filename or the run's", function()
    local pool = new_pool { filename = "spec/fixtures/handlers.lua", maxThreads = 2 }
    local list = { { a = 2, b = 3 }, { a = 4, b = 5 } }
    assert.are.same({ 5, 9 }, (collect(pool, list, { chunk = 2 })))
    assert.are.same({ 6, 20 }, (collect(pool, list, { name = "mul" })))
    local p2 = new_pool { handler = double, maxThreads = 1 }
    assert.are.same({ 1, 2, 3 }, (collect(p2, { 1, 2, 3 }, { filename = "spec/fixtures/echo.lua" })))
    assert.are.same({ -4, -5 }, (collect(p2, { 4, 5 }, { handler = function(x) return -x end, chunk = 2 })))
    local _, errs = collect(pool, list, { name = "nope" })
    helpers.assert_error(errs[1], "load_error")
    assert.are.equal(1, errs[1].index)
  end)

  it("yields every result once with ordered = false", function()
    local pool = new_pool { handler = double, maxThreads = 2 }
    local out, _, order = collect(pool, counter(500).next, { ordered = false, chunk = 3 })
    assert.are.equal(500, #order)
    table.sort(order)
    for i = 1, 500 do
      assert.are.equal(i, order[i])
      assert.are.equal(2 * i, out[i])
    end
  end)

  it("keeps at most window chunks unconsumed: back-pressure on the source", function()
    local pool = new_pool { handler = double, maxThreads = 2 }
    local c = counter(1000)
    for i in pool:imap(c.next, { window = 3, chunk = 5 }) do
      -- taken: what was consumed, the chunk being consumed, and 3 chunks more
      assert.truthy(c.pulled <= i + 5 + 3 * 5, ("pulled %d at %d"):format(c.pulled, i))
    end
  end)

  it("sends chunk inputs per task", function()
    local pool = new_pool { handler = double, maxThreads = 2 }
    collect(pool, counter(100).next, { chunk = 10 })
    assert.are.equal(10, pool.completed)
  end)

  it("chooses a larger chunk by itself for a cheap handler", function()
    local pool = new_pool { handler = double, maxThreads = 2 }
    local out = collect(pool, counter(20000).next)
    assert.are.equal(20000, #out)
    assert.truthy(pool.completed < 20000 / 4, pool.completed .. " tasks for 20000 inputs")
  end)

  it("yields an error with the input's index, and goes on with the others", function()
    local pool = new_pool { handler = double, maxThreads = 2 }
    local out, errs = collect(pool, { 1, 2, "boom", 4, 5, 6 }, { chunk = 4 })
    assert.are.same({ 2, 4, nil, 8, 10, 12 }, out)
    local e = errs[3]
    helpers.assert_error(e, "task_error")
    assert.are.equal(3, e.index)
    assert.truthy(e.message:find("boom on purpose", 1, true))
    assert.truthy(e.traceback)
    assert.truthy(e.workerId)
  end)

  it("fails only the input whose task cannot run, when a chunk fails as a whole", function()
    local pool = new_pool { maxThreads = 2, handler = function(x)
      if x == 3 then os.exit(1) end
      return x
    end }
    local out, errs = collect(pool, { 1, 2, 3, 4 }, { chunk = 4 })
    assert.are.same({ 1, 2, nil, 4 }, out)
    helpers.assert_error(errs[3], "worker_exited")
    assert.are.equal(3, errs[3].index)
  end)

  it("fails an input that cannot cross with serialize, at its index", function()
    local pool = new_pool { handler = function(x) return type(x) end, maxThreads = 1 }
    local co = coroutine.create(function() end)
    local out, errs = collect(pool, { 1, co, 3 }, { chunk = 3 })
    assert.are.same({ "number", nil, "number" }, out)
    helpers.assert_error(errs[2], "serialize")
    assert.are.equal(2, errs[2].index)
  end)

  it("with failFast raises the first error, with its index, and stops", function()
    local pool = new_pool { handler = double, maxThreads = 2 }
    local c = counter(100000)
    local n = 0
    local src = function()
      local v = c.next()
      if v == 50 then return "boom" end
      return v
    end
    local ok, e = pcall(function()
      for _ in pool:imap(src, { failFast = true, chunk = 10, window = 2 }) do n = n + 1 end
    end)
    assert.is_false(ok)
    helpers.assert_error(e, "task_error")
    assert.are.equal(50, e.index)
    assert.are.equal(49, n)
    assert.truthy(c.pulled < 1000, "pulled " .. c.pulled)
    pool:wait()
    assert.are.equal(0, pool.queueSize)
  end)

  it("calls onProgress(done, total) on the main thread, ending with all done", function()
    local pool = new_pool { handler = double, maxThreads = 2 }
    local calls = {}
    collect(pool, { 1, 2, 3, 4, 5 }, { chunk = 1, onProgress = function(done, total)
      assert.is_true(luapool.isMainThread)
      calls[#calls + 1] = { done, total }
    end })
    assert.are.same({ 5, 5 }, calls[#calls])
    local last
    collect(pool, counter(7).next, { onProgress = function(d, t) last = { d, t } end })
    assert.are.same({ 7 }, last)
  end)

  it("calls onProgress at most about 10 times a second", function()
    local pool = new_pool { handler = double, maxThreads = 2 }
    local calls = 0
    local t0 = luapool.now and luapool.now() or require("luapool.core").now()
    collect(pool, counter(200000).next, { chunk = 1, onProgress = function() calls = calls + 1 end })
    local secs = ((require("luapool.core").now()) - t0) / 1000
    assert.truthy(calls <= 10 * secs + 2, calls .. " calls in " .. secs .. " s")
  end)

  it("refuses bad options", function()
    local pool = new_pool { handler = double, maxThreads = 1 }
    for _, o in ipairs { { chunk = 0 }, { window = 1.5 }, { bogus = 1 }, { onProgress = 3 } } do
      helpers.assert_error(helpers.raised(pool.imap, pool, { 1 }, o), "invalid_option")
    end
    helpers.assert_error(helpers.raised(pool.imap, pool, 42), "invalid_option")
  end)

  it("cancels what is in flight when a loop breaks (Lua 5.4: a to-be-closed value)", function()
    if _VERSION ~= "Lua 5.4" then pending("needs Lua 5.4's generic for closing") return end
    local pool = new_pool { handler = double, maxThreads = 1 }
    local body = load([[
      local pool, src = ...
      for i in pool:imap(src, { chunk = 1, window = 8 }) do
        if i == 2 then break end
      end
    ]])
    body(pool, counter(1000).next)
    pool:wait()
    assert.truthy(pool.completed <= 10, pool.completed .. " tasks settled")
  end)
end)

describe("pool:map", function()
  it("raises the first error with its index, and cancels the other tasks", function()
    local pool = new_pool { handler = double, maxThreads = 1, minThreads = 1 }
    local ok, e = pcall(pool.map, pool, { 1, "boom", 3, 4, 5, 6, 7, 8 })
    assert.is_false(ok)
    helpers.assert_error(e, "task_error")
    assert.are.equal(2, e.index)
    pool:wait()
    assert.are.equal(0, pool.queueSize)
  end)

  it("gives a value that cannot cross its index too", function()
    local pool = new_pool { handler = double, maxThreads = 1 }
    local e = helpers.raised(pool.map, pool, { 1, coroutine.create(function() end) })
    helpers.assert_error(e, "serialize")
    assert.are.equal(2, e.index)
  end)
end)
