-- What users of Piscina reach for (issue 9): abort reasons, close { force },
-- closeTimeout, the close and needsDrain events, once and off, the thread
-- counts as fields; and errors that explain themselves.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local gate = require "spec.support.gate"
local raised, rejection = helpers.raised, helpers.rejection

local scope = helpers.scope({ quiet_destroy = true })
after_each(scope.cleanup)
local new = scope.new_pool

local function echo_pool(extra)
  local o = { handler = function(x) return x end, minThreads = 1, maxThreads = 1 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return new(o)
end

describe("abort reasons", function()
  it("ctl:abort(reason) sets signal.reason and each rejection's cause", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
    local ctl = luapool.AbortController()
    local g = scope.new_gate()
    local running = pool:run(g, { signal = ctl.signal })
    gate.wait_started(running, g)
    local queued = pool:run(scope.new_gate(), { signal = ctl.signal })
    local why = { reason = "user left" }
    ctl:abort(why)
    assert.is_true(ctl.signal.aborted)
    assert.equal(why, ctl.signal.reason)
    for _, t in ipairs({ running, queued }) do
      local e = rejection(t)
      assert.equal("aborted", e.code)
      assert.equal(why, e.cause)
    end
    local e = raised(pool.run, pool, 1, { signal = ctl.signal })
    assert.equal("aborted", e.code)
    assert.equal(why, e.cause)
  end)

  it("without a reason, the reason is an aborted error, as Node's AbortError", function()
    local ctl = luapool.AbortController()
    ctl.abort()
    assert.is_true(luapool.isError(ctl.signal.reason))
    assert.equal("aborted", ctl.signal.reason.code)
  end)
end)

describe("close", function()
  it("close { force = true } rejects what is queued and lets the running task finish", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
    local g = scope.new_gate("done")
    local running = pool:run(g)
    gate.wait_started(running, g)
    local queued = pool:run(scope.new_gate())
    local closed = 0
    pool:on("close", function() closed = closed + 1 end)
    -- released once close has rejected the queue: else the worker may take
    -- the queued task first (no race; close waits for the running one)
    local cancel = pool.cancelPendingTasks
    pool.cancelPendingTasks = function(self) cancel(self); gate.release(g) end
    pool:close({ force = true })
    assert.equal("done", (running:get()))
    assert.equal("cancelled", rejection(queued).code)
    assert.equal(1, closed)
    assert.equal("destroyed", raised(pool.run, pool, 1).code)
  end)

  it("closeTimeout destroys a pool whose tasks outlast it, and says so", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1, closeTimeout = 50 }
    local g = scope.new_gate()
    local running = pool:run(g)
    gate.wait_started(running, g)
    local errors = {}
    pool:on("error", function(e) errors[#errors + 1] = e end)
    pool:close()
    assert.equal("terminated", rejection(running).code)
    assert.equal(1, #errors)
    assert.equal("timeout", errors[1].code)
    assert.truthy(errors[1].message:find("closeTimeout", 1, true))
  end)

  it("does not ignore its arguments", function()
    local pool = echo_pool()
    assert.equal("invalid_argument", raised(pool.close, pool, "now").code)
    assert.equal("invalid_option", raised(pool.close, pool, { forse = true }).code)
    assert.equal("invalid_option", raised(luapool.new, { closeTimeout = -1 }).code)
  end)
end)

describe("events", function()
  it("once fires one time, off removes a handler", function()
    local pool = echo_pool()
    local a, b = 0, 0
    local function fa() a = a + 1 end
    local function fb() b = b + 1 end
    pool:once("drain", fa)
    pool:on("drain", fb)
    pool:run(1):get()
    pool:poll()
    pool:run(2):get()
    pool:poll()
    assert.equal(1, a)
    assert.equal(2, b)
    pool:off("drain", fb)
    pool:run(3):get()
    pool:poll()
    assert.equal(2, b)
    pool:once("drain", fa)
    pool:off("drain", fa)  -- a once handler can be removed before it fires
    pool:run(4):get()
    pool:poll()
    assert.equal(1, a)
    assert.equal("invalid_argument", raised(pool.once, pool, "nope", fa).code)
    assert.equal("invalid_argument", raised(pool.off, pool, "drain", 5).code)
  end)

  it("needsDrain fires when every worker is busy, again after a drain", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
    local fired = 0
    pool:on("needsDrain", function() fired = fired + 1 end)
    local g1 = scope.new_gate(1)
    local t1 = pool:run(g1)
    gate.wait_started(t1, g1)
    local g2 = scope.new_gate(2)
    local t2 = pool:run(g2)
    pool:poll()
    assert.equal(1, fired)
    gate.release(g1)
    gate.release(g2)
    t1:get()
    t2:get()
    pool:wait()
    local g3 = scope.new_gate(3)
    local t3 = pool:run(g3)
    gate.wait_started(t3, g3)
    pool:run(scope.new_gate(4))
    pool:poll()
    assert.equal(2, fired)
  end)
end)

describe("fields and clocks", function()
  it("pool.minThreads and pool.maxThreads are the resolved counts", function()
    local pool = new { handler = function(x) return x end, maxThreads = 3, minThreads = 2 }
    assert.equal(2, pool.minThreads)
    assert.equal(3, pool.maxThreads)
  end)

  it("luapool.now() is a monotonic clock in ms", function()
    local a = luapool.now()
    local b = luapool.now()
    assert.is_number(a)
    assert.is_true(b >= a)
  end)
end)

describe("errors that explain themselves", function()
  it("tostring(err) ends with the worker's traceback; its first line is unchanged", function()
    local pool = echo_pool({ handler = function(x) error(x) end })
    local e = rejection(pool:run("boom"))
    local s = tostring(e)
    local first = s:match("^[^\n]*")
    assert.truthy(first:find("^luapool task_error: .*boom$"), first)
    assert.truthy(s:find("\nstack traceback:", 1, true), s)
    assert.truthy(s:find("in function 'error'", 1, true), s)
  end)

  it("a table raised without a message shows its fields briefly", function()
    local pool = echo_pool({ handler = function(x) error(x) end })
    local e = rejection(pool:run({ reason = "bad input" }))
    assert.equal('{reason = "bad input"}', e.message)
    assert.same({ reason = "bad input" }, e.value)
    e = rejection(pool:run({ 1, 2, 3, 4, 5, 6, 7 }))
    assert.equal("{[1] = 1, [2] = 2, [3] = 3, [4] = 4, [5] = 5, [6] = 6, ...}", e.message)
    e = rejection(pool:run({ message = "has one" }))
    assert.equal("has one", e.message)
  end)
end)

describe("task:await()", function()
  it("yields a plain coroutine until the task settles, then returns its values", function()
    local pool = echo_pool()
    local co = coroutine.create(function() return pool:run(42):await() end)
    local results
    while true do
      local ok, v = coroutine.resume(co)
      assert.is_true(ok, v)
      if coroutine.status(co) == "dead" then results = v break end
      assert.equal(pool, v)  -- it yields the pool, a pollable
      pool:poll(10)
    end
    assert.equal(42, results)
  end)

  it("waits like get() outside a coroutine", function()
    local pool = echo_pool()
    assert.equal(7, pool:run(7):await())
  end)

  it("runs under cqueues", function()
    local ok, cqueues = pcall(require, "cqueues")
    if not ok then pending("cqueues is not installed for this Lua") return end
    local pool = echo_pool()
    local cq = cqueues.new()
    local got = {}
    for i = 1, 3 do
      cq:wrap(function() got[i] = pool:run(i * 10):await() end)
    end
    assert(cq:loop())
    assert.same({ 10, 20, 30 }, got)
  end)
end)
