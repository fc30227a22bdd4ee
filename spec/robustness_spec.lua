-- Behaviour at the edges: races the review found, callbacks that raise or
-- destroy the pool, huge and zero durations, event-loop integration.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local rejection, poll_until = helpers.rejection, helpers.poll_until

local HANDLERS = "spec/fixtures/handlers.lua"
local scope = helpers.scope({ quiet_destroy = true })
after_each(scope.cleanup)
local new = scope.new_pool

describe("robustness", function()
  it("task:status() reaches fulfilled by itself, without poll()", function()
    local pool = new { handler = function(x) return x end, minThreads = 1, maxThreads = 1 }
    local t = pool:run(1)
    local deadline = os.time() + 60
    while t:status() ~= "fulfilled" do assert(os.time() < deadline, "never fulfilled") end
    assert.equal(1, t:get())
  end)

  it("runAll tasks of a worker that exits go to another worker", function()
    local pool = new { filename = HANDLERS, minThreads = 2, maxThreads = 2 }
    local infos = pool:runAll(nil, { name = "info" })
    for _, t in ipairs(infos) do t:get() end
    -- worker 2 exits; what runAll then queued for it must still run
    local first = pool:runAll(2, { name = "exit" })
    local second = pool:runAll({ a = 1, b = 2 })
    for _, t in ipairs(first) do assert.equal("worker_exited", rejection(t).code) end
    for _, t in ipairs(second) do
      assert.is_true(t:wait(60000))
      assert.equal(3, t:get())
    end
  end)

  it("a workerDestroy handler that raises does not stop the replacement", function()
    local pool = new { filename = HANDLERS, minThreads = 1, maxThreads = 1 }
    pool:on("workerDestroy", function() error("handler bug", 0) end)
    local a = pool:run(1, { name = "exit" })
    local b = pool:run({ a = 2, b = 3 })
    local ok, err = pcall(function() return a:wait() and b:wait() end)
    if not ok then assert.equal("handler bug", err) end
    assert.equal(5, b:get())
  end)

  it("callbacks after one that raises still run, at the next poll", function()
    local pool = new { handler = function(x) return x end, minThreads = 1, maxThreads = 1 }
    local fired = {}
    local t = pool:run(1)
    t:onDone(function() fired[#fired + 1] = "a"; error("boom", 0) end)
    t:onDone(function() fired[#fired + 1] = "b" end)
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.equal("boom", err)
    assert.same({ "a" }, fired)
    pool:poll()
    assert.same({ "a", "b" }, fired)
  end)

  it("a callback may destroy the pool", function()
    local pool = new { handler = function(x) return x end, minThreads = 1, maxThreads = 1 }
    local t1, t2 = pool:run(1), pool:run(2)
    t1:onDone(function() pool:destroy() end)
    t1:wait()
    pool:poll()
    assert.is_true(t2:wait(60000))
    assert.truthy(t2:status() == "fulfilled" or rejection(t2).code == "terminated")
  end)

  it("destroy interrupts a worker still running its task file's top level", function()
    local ok, pool = pcall(luapool.new, { handler = function() end, minThreads = 1, maxThreads = 1,
                                          terminateTimeout = 60000 })
    assert.is_true(ok)
    scope.track(pool)
    -- a per-run file whose top level loops: the worker is inside it, not a handler
    local t = pool:run(nil, { filename = "spec/fixtures/rb_loop_on_load.lua" })
    poll_until(pool, function() return t:status() == "running" end)
    local start = os.time()
    pool:destroy()  -- raises terminate_timeout if the loop could not be stopped
    assert.truthy(os.time() - start < 30)
    assert.equal("terminated", rejection(t).code)
  end)

  it("stops code running inside a coroutine the task resumed", function()
    local pool = new { handler = function(how)
      local f = function() while true do io.open("/nonexistent/luapool") end end
      if how == "wrap" then coroutine.wrap(f)() else coroutine.resume(coroutine.create(f)) end
    end, minThreads = 1, maxThreads = 1, terminateTimeout = 60000 }
    local errors = {}
    pool:on("error", function(e) errors[#errors + 1] = e end)
    for _, how in ipairs({ "wrap", "resume" }) do
      local t = pool:run(how)
      poll_until(pool, function() return t:status() == "running" end)
      assert.is_true(t:cancel())
      assert.equal("aborted", rejection(t).code)
      assert.is_true(pool:wait(60000))
    end
    assert.same({}, errors)  -- interrupted, never given up on
    -- and the replaced coroutine functions still behave
    local a, b = pool:run(nil, { handler = function()
      local g = coroutine.wrap(function(x) local y = coroutine.yield(x + 1) return y * 2 end)
      return g(1), g(10)
    end }):get()
    assert.same({ 2, 20 }, { a, b })
    local err = rejection(pool:run(nil, { handler = function()
      return coroutine.wrap(function() error("inner", 0) end)()
    end }))
    assert.equal("inner", err.value)
  end)

  it("takes math.huge for idleTimeout and wait timeouts as no limit", function()
    local pool = new { filename = HANDLERS, minThreads = 1, maxThreads = 2, idleTimeout = math.huge }
    local a, b = pool:run({ a = 1, b = 1 }), pool:run({ a = 2, b = 2 })
    assert.is_true(a:wait(math.huge))
    assert.is_true(b:wait(math.huge))
    assert.is_true(pool:wait(math.huge))
    pool:poll(0)
    -- the second worker, if one was started, is still there
    local n = #pool.threads
    pool:poll(50)
    assert.equal(n, #pool.threads)
  end)

  it("terminateTimeout = 0 does not call idle workers stuck", function()
    local pool = new { filename = HANDLERS, minThreads = 2, maxThreads = 2, terminateTimeout = 0 }
    for _, t in ipairs(pool:runAll({ a = 1, b = 1 })) do t:get() end
    assert.has_no.errors(function() pool:destroy() end)
  end)

  it("pool:timeout() tells an event loop when a timer is due, in seconds", function()
    local pool = new { filename = HANDLERS, minThreads = 1, maxThreads = 1 }
    pool:poll()  -- the first worker's workerCreate, which new() waited for
    assert.is_nil(pool:timeout())
    local path = scope.tmpname()
    local t = pool:run(path, { handler = function(p)
      while true do local f = io.open(p) if f then f:close() return end end
    end, timeout = 60000 })
    local s = pool:timeout()
    assert.equal("number", type(s))
    assert.truthy(s > 0 and s <= 60)
    helpers.touch(path)
    t:wait()
  end)
end)
