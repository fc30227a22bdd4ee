-- Isolation, recycling, cancelling, aborts, timeouts, terminateTimeout,
-- teardown and memory limits.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local touch, lines, rejection = helpers.touch, helpers.lines, helpers.rejection
-- Waits (polling the pool, never sleeping) until cond() holds.
local until_true = helpers.poll_until
local exists = helpers.exists

local STATE = "spec/fixtures/lc_state.lua"
local jit = rawget(_G, "jit")
local it_threads = helpers.threads_only(it, pending)

local scope = helpers.scope { quiet_destroy = true }
after_each(scope.cleanup)  -- creates every tmpname() file first: releases any spin_until
local new, tmpname = scope.new_pool, scope.new_file

local function running(pool, task)
  until_true(pool, function() return task:status() == "running" end)
end

describe("isolateWorkers", function()
  it("gives every task a fresh state with the task file loaded", function()
    local pool = new { filename = STATE, isolateWorkers = true, minThreads = 1, maxThreads = 1 }
    for _ = 1, 20 do
      local count, id = pool:run():get()
      assert.equal(1, count)
      assert.equal(1, id)
    end
  end)

  it("keeps state between tasks without it", function()
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1 }
    assert.equal(1, pool:run():get())
    assert.equal(2, pool:run():get())
  end)

  it("runs teardown before each state closes", function()
    local log = tmpname()
    local pool = new { filename = STATE, isolateWorkers = true, teardown = "teardown",
                       minThreads = 1, maxThreads = 1, workerData = log }
    for _ = 1, 3 do pool:run():get() end
    pool:destroy()
    -- three states served a task and closed; a fourth, made for the next
    -- task, closes with the pool (with teardown if it had loaded the file)
    local n = #lines(log)
    assert.truthy(n == 3 or n == 4, n)
  end)
end)

describe("recycleWorkers", function()
  it("replaces idle workers with fresh states", function()
    local pool = new { filename = STATE, minThreads = 2, maxThreads = 2 }
    for _, t in ipairs(pool:runAll()) do t:wait() end
    local destroyed = 0
    pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
    pool:recycleWorkers()
    assert.equal(2, destroyed)
    for _, t in ipairs(pool:runAll()) do assert.equal(1, (t:get())) end
    assert.equal(2, #pool.threads)
  end)

  it("waits for running tasks, which finish normally", function()
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1 }
    local path = tmpname()
    local busy = pool:run(path, { name = "spin_until" })
    running(pool, busy)
    local queued = pool:run()
    local released = false
    pool:on("workerDestroy", function() released = true end)
    touch(path)
    pool:recycleWorkers()
    assert.is_true(released)
    assert.equal("released", busy:get())
    assert.equal(1, (queued:get()))  -- on the new worker's fresh state
  end)

  it("runs teardown on each recycled state and refuses an unknown runtime", function()
    local log = tmpname()
    local pool = new { filename = STATE, teardown = "teardown", minThreads = 2, maxThreads = 2,
                       workerData = log }
    for _, t in ipairs(pool:runAll()) do t:wait() end
    pool:recycleWorkers({ runtime = "threads" })
    local ids = lines(log)
    table.sort(ids)
    assert.same({ "1", "2" }, ids)
    local ok, err = pcall(pool.recycleWorkers, pool, { runtime = "fibers" })
    assert.is_false(ok)
    assert.equal("invalid_option", err.code)
  end)
end)

describe("stopping running tasks", function()
  it("task:cancel() rejects a running task with aborted and replaces its worker", function()
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1 }
    assert.equal(1, pool:run():get())
    local t = pool:run(tmpname(), { name = "spin_until" })
    running(pool, t)
    assert.is_true(t:cancel())
    local err = rejection(t)
    assert.equal("aborted", err.code)
    assert.equal("The task has been aborted", err.message)
    assert.is_false(t:cancel())
    assert.equal(1, pool:run():get())  -- a fresh state serves the next task
  end)

  it("stops a loop that allocates", function()
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1 }
    local t = pool:run(nil, { name = "allocate" })
    running(pool, t)
    t:cancel()
    pool:wait()
    local seen = {}
    pool:on("error", function(e) seen[#seen + 1] = e end)
    assert.equal(1, pool:run():get())
    assert.same({}, seen)  -- stopped by the interrupt, nothing detached
  end)

  it("AbortController aborts queued and running tasks carrying its signal", function()
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1 }
    local ctl = luapool.AbortController()
    local other = tmpname()
    local a = pool:run(tmpname(), { name = "spin_until", signal = ctl.signal })
    local b = pool:run(nil, { signal = ctl.signal })
    running(pool, a)
    assert.equal("pending", b:status())
    ctl:abort()
    assert.is_true(ctl.signal.aborted)
    for _, t in ipairs({ a, b }) do
      local err = rejection(t)
      assert.equal("aborted", err.code)
      assert.equal("The task has been aborted", err.message)
    end
    local ok, err = pcall(pool.run, pool, nil, { signal = ctl.signal })
    assert.is_false(ok)
    assert.equal("aborted", err.code)
    assert.equal(0, pool.queueSize)
    touch(other)
    assert.equal(1, pool:run():get())
  end)

  it("a timeout rejects a running task with timeout", function()
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1 }
    local t = pool:run(tmpname(), { name = "spin_until", timeout = 30 })
    local err = rejection(t)
    assert.equal("timeout", err.code)
    assert.equal("The task has timed out", err.message)
    assert.equal(1, pool:run():get())
  end)

  it("a timeout counts from run(): a task still queued times out too", function()
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1 }
    local path = tmpname()
    local busy = pool:run(path, { name = "spin_until" })
    running(pool, busy)  -- else a slow worker start could leave busy queued past the timeout
    local queued = pool:run(nil, { timeout = 20 })
    assert.equal("timeout", rejection(queued).code)
    assert.equal("running", busy:status())
    touch(path)
    assert.equal("released", busy:get())
  end)

  it("a task that finishes in time is not touched by its timeout", function()
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1 }
    assert.equal(1, pool:run(nil, { timeout = 60000 }):get())
    assert.equal(2, pool:run(nil, { timeout = 60000 }):get())
  end)

  -- the process runtime kills such a worker instead: spec/process_spec.lua
  it_threads("gives up on a worker that takes no interrupt after terminateTimeout", function()
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1, terminateTimeout = 50 }
    local errors, destroyed = {}, 0
    pool:on("error", function(e) errors[#errors + 1] = e end)
    pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
    -- about 1-3 s of compiled loop on LuaJIT; PUC Lua stops it at once. The
    -- timeout comes once the loop runs compiled, not while it is interpreted.
    local started = tmpname()
    local ctl = luapool.AbortController()
    local t = pool:run({ n = jit and 2e9 or 1e12, started = started },
                       { name = "compiled", signal = ctl.signal })
    until_true(pool, function() return exists(started) end)
    ctl:abort()
    assert.equal("aborted", rejection(t).code)
    until_true(pool, function() return destroyed >= 1 end)
    if jit then
      assert.equal(1, #errors)
      assert.equal("terminate_timeout", errors[1].code)
      assert.equal(1, errors[1].workerId)
    else
      assert.equal(0, #errors)
    end
    assert.equal(1, pool:run():get())  -- a new worker in the slot
  end)

  it_threads("destroy never hangs on such a worker", function()
    if not jit then pending("PUC Lua interrupts every loop") return end
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1, terminateTimeout = 50 }
    local started = tmpname()
    local t = pool:run({ n = 2e9, started = started }, { name = "compiled" })
    until_true(pool, function() return exists(started) end)  -- compiled, in its trace
    local ok, err = pcall(pool.destroy, pool)
    assert.is_false(ok)
    assert.equal("terminate_timeout", err.code)
    assert.equal("terminated", rejection(t).code)
  end)
end)

describe("memory", function()
  it("reports each worker's heap in threads[i].heapBytes", function()
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1 }
    pool:run(10, { name = "hoard" }):get()
    local before = pool.threads[1].heapBytes
    pool:run(20000, { name = "hoard" }):get()
    local after = pool.threads[1].heapBytes
    assert.truthy(before > 0)
    assert.truthy(after > before + 20000 * 16)
  end)

  it("replaces a worker whose heap passed maxMemoryLimitBeforeRecycle after a task", function()
    local pool = new { filename = STATE, minThreads = 1, maxThreads = 1,
                       maxMemoryLimitBeforeRecycle = 2 * 1024 * 1024 }
    assert.equal(10, pool:run(10, { name = "hoard" }):get())
    assert.equal(20, pool:run(10, { name = "hoard" }):get())  -- same state
    assert.equal(100020, pool:run(100000, { name = "hoard" }):get())
    assert.equal(10, pool:run(10, { name = "hoard" }):get())  -- a fresh state
  end)

  it("fails a task past resourceLimits.maxHeapBytes with out_of_memory; others go on", function()
    local pool = new { filename = STATE, minThreads = 2, maxThreads = 2,
                       resourceLimits = { maxHeapBytes = 8 * 1024 * 1024 } }
    local path = tmpname()
    local other = pool:run(path, { name = "spin_until" })
    running(pool, other)
    local err = rejection(pool:run(nil, { name = "allocate" }))
    assert.equal("out_of_memory", err.code)
    assert.truthy(err.message:find("8388608", 1, true))
    assert.equal(1, pool:run():get())
    touch(path)
    assert.equal("released", other:get())
  end)

  it("validates the memory options", function()
    for _, o in ipairs({ { maxMemoryLimitBeforeRecycle = -1 }, { resourceLimits = 5 },
                         { resourceLimits = { maxHeapBytes = 0 } },
                         { resourceLimits = { maxYoung = 1 } }, { terminateTimeout = "x" },
                         { teardown = 1 }, { isolateWorkers = "yes" } }) do
      local ok, err = pcall(luapool.new, o)
      assert.is_false(ok)
      assert.equal("invalid_option", err.code)
    end
  end)
end)
