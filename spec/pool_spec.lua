-- The pool and its tasks, as API.md describes them.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local gate = require "spec.support.gate"
local rejection, raised = helpers.rejection, helpers.raised

local ECHO = "spec/fixtures/echo.lua"
local HANDLERS = "spec/fixtures/handlers.lua"

local scope = helpers.scope()
after_each(scope.cleanup)
local new, new_gate, gates = scope.new_pool, scope.new_gate, scope.gates

describe("luapool.new", function()
  it("checks the task file at once: a missing file raises load_error naming it", function()
    local err = raised(luapool.new, { filename = "spec/fixtures/no_such_file.lua" })
    assert.is_true(luapool.isError(err))
    assert.equal("load_error", err.code)
    assert.truthy(err.message:find("no_such_file.lua", 1, true))
  end)

  it("checks the task file at once: a syntax error raises load_error naming it", function()
    local err = raised(luapool.new, { filename = "spec/fixtures/syntax_error.lua" })
    assert.equal("load_error", err.code)
    assert.truthy(err.message:find("syntax_error.lua", 1, true))
  end)

  it("raises on invalid options, naming the option", function()
    local cases = {
      { { minThreads = -1 }, "minThreads" },
      { { maxThreads = 0 }, "maxThreads" },
      { { maxThreads = 1.5 }, "maxThreads" },
      { { idleTimeout = "soon" }, "idleTimeout" },
      { { maxQueue = -3 }, "maxQueue" },
      { { maxQueue = "lots" }, "maxQueue" },
      { { filename = 42 }, "filename" },
      { { name = false }, "name" },
      { { handler = "f" }, "handler" },
      { { maxThreds = 2 }, "maxThreds" },
      { { minThreads = 3, maxThreads = 2 }, "minThreads and options.maxThreads must not conflict" },
    }
    for _, c in ipairs(cases) do
      local err = raised(luapool.new, c[1])
      assert.is_true(luapool.isError(err))
      assert.truthy(err.message:find(c[2], 1, true), err.message)
    end
  end)

  it("fills in defaults and resolves maxQueue = 'auto' in pool.options", function()
    local pool = new { filename = ECHO, minThreads = 1, maxThreads = 3, maxQueue = "auto" }
    local o = pool.options
    assert.equal(9, o.maxQueue)
    assert.equal("default", o.name)
    assert.equal(0, o.idleTimeout)
    o.maxQueue = 1  -- a copy: the pool keeps its own
    assert.equal(9, pool.options.maxQueue)
  end)

  it("starts minThreads workers at creation", function()
    local pool = new { filename = ECHO, minThreads = 2, maxThreads = 3 }
    assert.equal(2, #pool.threads)
  end)
end)

describe("pool:run", function()
  it("returns a Task at once, whose get() returns every value, nils included", function()
    local pool = new { filename = HANDLERS, minThreads = 1, maxThreads = 1 }
    local task = pool:run(nil, { name = "many" })
    assert.equal("table", type(task))
    local n = select("#", task:get())
    assert.equal(4, n)
    local a, b, c, d = task:get()
    assert.same({ 1, nil, "three", nil }, { a, b, c, d })
    assert.equal(0, select("#", pool:run(nil, { name = "none" }):get()))
  end)

  it("picks a handler by name, per pool and per run", function()
    local pool = new { filename = HANDLERS, maxThreads = 2 }
    assert.equal(5, pool:run({ a = 2, b = 3 }):get())
    assert.equal(6, pool:run({ a = 2, b = 3 }, { name = "mul" }):get())
    local mulpool = new { filename = HANDLERS, name = "mul", maxThreads = 1 }
    assert.equal(6, mulpool:run({ a = 2, b = 3 }):get())
    assert.equal(5, mulpool:run({ a = 2, b = 3 }, { name = "default" }):get())
  end)

  it("takes a filename per run, and a handler function per pool or per run", function()
    local pool = new { handler = function(x) return x + 1 end, maxThreads = 1 }
    assert.equal(2, pool:run(1):get())
    assert.equal(7, pool:run({ a = 3, b = 4 }, { filename = HANDLERS }):get())
    assert.equal(10, pool:run(5, { handler = function(x) return x * 2 end }):get())
  end)

  it("rejects an unknown handler name with Tinypool's message", function()
    local pool = new { filename = HANDLERS, maxThreads = 1 }
    local err = rejection(pool:run(1, { name = "nope" }))
    assert.equal('No handler function "nope" exported from "' .. HANDLERS .. '"', err.message)
  end)

  it("rejects a task whose file fails to load or returns no function", function()
    local pool = new { handler = function() end, maxThreads = 1 }
    local err = rejection(pool:run(1, { filename = "spec/fixtures/raises_on_load.lua" }))
    assert.equal("load_error", err.code)
    assert.truthy(err.message:find("fails while loading", 1, true))
    err = rejection(pool:run(1, { filename = "spec/fixtures/not_a_function.lua" }))
    assert.equal("load_error", err.code)
    assert.truthy(err.message:find("must return a function", 1, true))
  end)

  it("raises without a filename or handler anywhere", function()
    local pool = new { maxThreads = 1 }
    local err = raised(pool.run, pool, 1)
    assert.equal("filename must be provided to run() or in options object", err.message)
    assert.equal(0, pool.queueSize)
  end)

  it("rejects with an error table: code, message, value, traceback, workerId", function()
    local pool = new { filename = HANDLERS, maxThreads = 1 }
    local err = rejection(pool:run("boom", { name = "fail" }))
    assert.equal("task_error", err.code)
    assert.equal("boom", err.message)
    assert.equal("boom", err.value)
    assert.truthy(err.traceback:find("stack traceback", 1, true))
    assert.truthy(err.traceback:find("handlers.lua", 1, true))
    assert.equal(1, err.workerId)
    local s = tostring(err)
    assert.equal("luapool task_error: boom", s:match("^[^\n]*"))
    assert.equal(s:match("^[^\n]*") .. "\n" .. err.traceback, s)  -- the traceback follows
    err = rejection(pool:run(nil, { name = "fail_table" }))
    assert.same({ reason = "bad input", n = 42 }, err.value)
  end)

  it("keeps the first line of tostring to the message's first line, then the traceback", function()
    local pool = new { filename = HANDLERS, maxThreads = 1 }
    local err = rejection(pool:run("line one\nline two", { name = "fail" }))
    assert.equal("line one\nline two", err.message)
    assert.equal("luapool task_error: line one", tostring(err):match("^[^\n]*"))
    assert.falsy(tostring(err):find("line two", 1, true))
    assert.equal("luapool cancelled: x", tostring(luapool._error("cancelled", "x")))  -- no traceback: one line
  end)

  it("tells errors from other values with luapool.isError", function()
    assert.is_false(luapool.isError({ code = "task_error", message = "x" }))
    assert.is_false(luapool.isError("task_error"))
    assert.is_false(luapool.isError(nil))
  end)
end)

describe("Task", function()
  it("goes pending, running, fulfilled", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
    local g1, g2 = new_gate("one"), new_gate("two")
    local t1 = pool:run(g1)
    local t2 = pool:run(g2)
    gate.wait_started(t1, g1)
    assert.equal("running", t1:status())
    assert.equal("pending", t2:status())
    gate.release(g1)
    gate.release(g2)
    assert.equal("two", t2:get())
    assert.equal("fulfilled", t1:status())
    assert.equal("fulfilled", t2:status())
  end)

  it("status is rejected after an error", function()
    local pool = new { filename = HANDLERS, maxThreads = 1 }
    local t = pool:run("x", { name = "fail" })
    assert.is_true(t:wait())
    assert.equal("rejected", t:status())
  end)

  it("wait(ms) returns false when the time passes first, true once settled", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
    local g = new_gate("done")
    local t = pool:run(g)
    assert.is_false(t:wait(20))
    gate.release(g)
    assert.is_true(t:wait(60000))
    assert.equal("done", t:get())
  end)

  it("onDone calls back on the main thread with ok and the values", function()
    local pool = new { filename = HANDLERS, maxThreads = 1 }
    local got = {}
    local t = pool:run({ a = 1, b = 2 })
    t:onDone(function(ok, v) got[#got + 1] = { ok, v } end)
    assert.same({}, got)  -- never from another thread, only inside poll/wait/get
    t:wait()
    assert.same({ { true, 3 } }, got)
    local bad = pool:run("no", { name = "fail" })
    bad:onDone(function(ok, err) got[#got + 1] = { ok, err.code } end)
    pool:wait()
    assert.same({ true, 3 }, got[1])
    assert.same({ false, "task_error" }, got[2])
    -- on a task already settled: called by the next poll, not at once
    t:onDone(function(ok, v) got[#got + 1] = { ok, v } end)
    assert.equal(2, #got)
    pool:poll()
    assert.same({ true, 3 }, got[3])
  end)

  it("cancel() takes a queued task off the queue", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
    local g = new_gate(1)
    local running = pool:run(g)
    local queued = pool:run(new_gate(2))
    gate.wait_started(running, g)
    assert.equal(1, pool.queueSize)
    assert.is_true(queued:cancel())
    assert.equal(0, pool.queueSize)
    local err = rejection(queued)
    assert.equal("cancelled", err.code)
    assert.equal("The task has been cancelled", err.message)
    assert.is_false(queued:cancel())
    gate.release(g)
    assert.equal(1, running:get())
  end)
end)

describe("the queue", function()
  it("is FIFO", function()
    local pool = new { filename = ECHO, minThreads = 1, maxThreads = 1 }
    local order = {}
    for i = 1, 50 do
      pool:run(i):onDone(function(_, v) order[#order + 1] = v end)
    end
    pool:wait()
    for i = 1, 50 do assert.equal(i, order[i]) end
  end)

  it("raises queue_full at maxQueue and changes nothing else", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1, maxQueue = 2 }
    local g = new_gate(0)
    local running = pool:run(g)
    gate.wait_started(running, g)
    local q1, q2 = pool:run(new_gate(1)), pool:run(new_gate(2))
    local completed = pool.completed
    local err = raised(pool.run, pool, new_gate(3))
    assert.equal("queue_full", err.code)
    assert.equal("Task queue is at limit", err.message)
    assert.equal(2, pool.queueSize)
    assert.equal(completed, pool.completed)
    for _, gg in ipairs(gates) do gate.release(gg) end
    assert.equal(0, running:get())
    assert.equal(1, q1:get())
    assert.equal(2, q2:get())
  end)

  it("with maxQueue = 0 takes a task only when a worker is free", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1, maxQueue = 0 }
    local g = new_gate(0)
    local running = pool:run(g)
    gate.wait_started(running, g)
    assert.equal("queue_full", raised(pool.run, pool, new_gate(1)).code)
    gate.release(g)
    running:get()
    assert.equal(7, pool:run({ result = 7, release = g.release }):get())
  end)

  it("takes 100k tasks at once and settles them all", function()
    local pool = new { filename = ECHO, minThreads = 2, maxThreads = 2 }
    local sum = 0
    for i = 1, 100000 do
      pool:run(i):onDone(function(_, v) sum = sum + v end)
    end
    assert.is_true(pool:wait())
    assert.equal(100000 * 100001 / 2, sum)
    assert.equal(100000, pool.completed)
  end)

  it("carries a large value both ways and leaves the collector running", function()
    local pool = new { filename = ECHO, minThreads = 1, maxThreads = 1 }
    local list = {}
    for i = 1, 20000 do list[i] = { id = i, name = "item" .. i } end
    local back = pool:run(list):get()  -- large enough to decode with the GC paused
    assert.equal(20000, #back)
    assert.equal("item20000", back[20000].name)
    if _VERSION ~= "Lua 5.1" or rawget(_G, "jit") then
      assert.is_true(collectgarbage("isrunning"))
    end
    -- and the worker's collector too: it still frees what tasks leave behind
    local running = pool:run(nil, { handler = function()
      if _VERSION == "Lua 5.1" and not rawget(_G, "jit") then return nil end  -- no "isrunning"
      return collectgarbage("isrunning")
    end }):get()
    if running ~= nil then assert.is_true(running) end
  end)
end)

describe("workers", function()
  it("grow from minThreads up to maxThreads on demand", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 3, idleTimeout = 60000 }
    assert.equal(1, #pool.threads)
    local gs, ts = {}, {}
    for i = 1, 4 do
      gs[i] = new_gate(i)
      ts[i] = pool:run(gs[i])
    end
    for i = 1, 3 do gate.wait_started(ts[i], gs[i]) end
    assert.equal(3, #pool.threads)
    assert.equal(1, pool.queueSize)
    assert.is_true(pool.needsDrain)
    local ids = {}
    for i = 1, 4 do gate.release(gs[i]) end
    for i = 1, 4 do
      local _, id = ts[i]:get()
      ids[id] = true
    end
    assert.same({ [1] = true, [2] = true, [3] = true }, ids)
  end)

  it("above minThreads end after idleTimeout", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 2, idleTimeout = 10 }
    local destroyed = {}
    pool:on("workerDestroy", function(id) destroyed[#destroyed + 1] = id end)
    local g1, g2 = new_gate(1), new_gate(2)
    local t1, t2 = pool:run(g1), pool:run(g2)
    gate.wait_started(t1, g1)
    gate.wait_started(t2, g2)
    assert.equal(2, #pool.threads)
    gate.release(g1)
    gate.release(g2)
    pool:wait()
    local deadline = os.time() + 60
    while #destroyed < 1 and os.time() < deadline do pool:poll(100) end
    assert.equal(1, #destroyed)
    assert.equal(1, #pool.threads)
  end)

  it("see the worker view of require 'luapool', workerData and the main package paths", function()
    local data = { name = "shared", list = { 1, 2, 3 } }
    local pool = new { filename = HANDLERS, minThreads = 2, maxThreads = 2, workerData = data }
    local info = pool:run(nil, { name = "info" }):get()
    assert.is_false(info.main)
    assert.is_true(info.worker)
    assert.truthy(info.id == 1 or info.id == 2)
    assert.same(data, info.data)
    assert.equal(package.path, info.path)
    assert.equal(package.cpath, info.cpath)
    assert.is_true(luapool.isMainThread)
    assert.is_false(luapool.isWorkerThread)
    assert.is_nil(luapool.workerId)
  end)

  it("a handler calling os.exit ends only its worker, which is replaced", function()
    local pool = new { filename = HANDLERS, minThreads = 1, maxThreads = 1 }
    local created, destroyed = 0, 0
    pool:on("workerCreate", function() created = created + 1 end)
    pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
    local deadline = os.time() + 60
    while created == 0 and os.time() < deadline do pool:poll(100) end
    assert.equal(1, created)
    local err = rejection(pool:run(5, { name = "exit" }))
    assert.equal("worker_exited", err.code)
    assert.equal(5, err.value)
    assert.truthy(err.message:find("5", 1, true))
    assert.equal(9, pool:run({ a = 4, b = 5 }):get())  -- a new worker serves
    assert.equal(1, destroyed)
    assert.equal(2, created)
    err = rejection(pool:run(nil, { name = "exit_caught" }))  -- pcall cannot keep it alive
    assert.equal("worker_exited", err.code)
    assert.equal(3, err.value)
    assert.equal(9, pool:run({ a = 4, b = 5 }):get())
  end)

  it("runAll runs a task once on every live worker", function()
    local pool = new { filename = HANDLERS, minThreads = 3, maxThreads = 3 }
    local tasks = pool:runAll(nil, { name = "info" })
    assert.equal(3, #tasks)
    local ids = {}
    for _, t in ipairs(tasks) do ids[t:get().id] = true end
    assert.same({ [1] = true, [2] = true, [3] = true }, ids)
  end)
end)

describe("pool methods", function()
  it("map returns the first values in order and raises the first error", function()
    local pool = new { handler = function(x) return x * x, "ignored" end, maxThreads = 2 }
    assert.same({ 1, 4, 9, 16 }, pool:map({ 1, 2, 3, 4 }))
    local err = raised(pool.map, pool, { 1, "x", 3 })
    assert.equal("task_error", err.code)
  end)

  it("map waits for room in a bounded queue instead of failing", function()
    local pool = new { filename = ECHO, minThreads = 1, maxThreads = 1, maxQueue = 2 }
    local list = {}
    for i = 1, 200 do list[i] = i end
    assert.same(list, pool:map(list))
  end)

  it("wait(ms) is false while tasks run, true when all are done", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
    local g = new_gate(1)
    pool:run(g)
    assert.is_false(pool:wait(20))
    gate.release(g)
    assert.is_true(pool:wait())
    assert.equal(0, pool.queueSize)
  end)

  it("poll never blocks and returns how many it settled", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
    local g = new_gate(1)
    local t = pool:run(g)
    gate.wait_started(t, g)
    pool:poll()  -- the workerCreate event, should wait_started not have polled it in
    assert.equal(0, pool:poll())
    gate.release(g)
    local n, deadline = 0, os.time() + 60
    while n == 0 and os.time() < deadline do n = pool:poll(1000) end
    assert.equal(1, n)
    assert.equal("fulfilled", t:status())
  end)

  it("fires message, drain, workerCreate events on the main thread", function()
    local pool = new { filename = HANDLERS, minThreads = 1, maxThreads = 1 }
    local msgs, drains, created = {}, 0, {}
    pool:on("message", function(v, id) msgs[#msgs + 1] = { v.i, id } end)
    pool:on("drain", function() drains = drains + 1 end)
    pool:on("workerCreate", function(id) created[#created + 1] = id end)
    assert.equal(3, pool:run(3, { name = "post" }):get())
    pool:wait()
    assert.same({ { 1, 1 }, { 2, 1 }, { 3, 1 } }, msgs)
    assert.equal(1, drains)
    assert.same({ 1 }, created)
    assert.has_error(function() pool:on("nonsense", print) end)
  end)

  it("cancelPendingTasks rejects queued tasks and leaves the running one", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
    local g = new_gate("ran")
    local running = pool:run(g)
    gate.wait_started(running, g)
    local queued = { pool:run(new_gate(1)), pool:run(new_gate(2)) }
    assert.equal(2, pool:cancelPendingTasks())
    for _, t in ipairs(queued) do assert.equal("cancelled", rejection(t).code) end
    gate.release(g)
    assert.equal("ran", running:get())
  end)

  it("close lets queued and running tasks finish, then refuses new ones", function()
    local pool = new { filename = ECHO, minThreads = 1, maxThreads = 1 }
    local tasks = {}
    for i = 1, 20 do tasks[i] = pool:run(i) end
    pool:close()
    for i = 1, 20 do assert.equal(i, tasks[i]:get()) end
    assert.equal("destroyed", raised(pool.run, pool, 1).code)
    assert.equal(0, #pool.threads)
  end)

  it("destroy rejects every unsettled task with terminated, and is idempotent", function()
    local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
    local g = new_gate(1)
    local running = pool:run(g)
    local queued = pool:run(new_gate(2))
    gate.wait_started(running, g)
    pool:destroy()
    for _, t in ipairs({ running, queued }) do
      local err = rejection(t)
      assert.equal("terminated", err.code)
      assert.equal("Terminating worker thread", err.message)
    end
    pool:destroy()
    assert.equal("destroyed", raised(pool.run, pool, 1).code)
  end)

  it("pollfd, events and timeout let an event loop watch the pool", function()
    local pool = new { filename = ECHO, maxThreads = 1 }
    local fd = pool:pollfd()
    assert.equal("number", type(fd))
    assert.equal(fd, pool:pollfd())
    assert.equal("r", pool:events())
    assert.equal(0, pool:timeout())  -- new() saw the first worker start: its event waits
    pool:poll()
    assert.is_nil(pool:timeout())
    local ok, uv = pcall(require, "luv")
    if not ok then pending("luv not installed") return end
    local t = pool:run(42)
    local wakes, settled, expired = 0, false, false
    t:onDone(function() settled = true end)
    -- then many tasks, up to 256 in flight, refilled from the fd's callback:
    -- the fd must never go quiet while results wait
    local total, done, sent = 20000, 0, 0
    local function refill()
      if not settled then return end
      while sent < total and sent - done < 256 do
        sent = sent + 1
        pool:run(sent):onDone(function() done = done + 1 end)
      end
    end
    local poll = assert(uv.new_poll(fd))
    poll:start("r", function()
      wakes = wakes + 1
      pool:poll()
      refill()
    end)
    local timer = uv.new_timer()
    timer:start(60000, 0, function() expired = true end)
    while not settled and not expired do uv.run("once") end
    refill()
    while done < total and not expired do uv.run("once") end
    timer:close()
    poll:close()
    uv.run()  -- until the closed handles are gone (their close callbacks ran)
    assert.is_true(settled)
    assert.truthy(wakes >= 1)
    assert.equal(42, t:get())
    assert.equal(total, done)
  end)

  it("pollfd becomes readable when a run's timeout is due, with no result to wake it", function()
    local ok, uv = pcall(require, "luv")
    if not ok then pending("luv is not installed for this Lua") return end
    local pool = new { minThreads = 1, maxThreads = 1, handler = function(job)
      if job.spin then while true do io.open("/nonexistent/luapool") end end
    end }
    local watcher = uv.new_poll(pool:pollfd())
    local got
    watcher:start("r", function() pool:poll() end)
    pool:run({ spin = true }, { timeout = 50 }):onDone(function(_, err) got = err end)
    local guard = uv.new_timer()  -- a broken pool fails the spec instead of hanging it
    local expired = false
    guard:start(60000, 0, function() expired = true end)
    while not got and not expired do uv.run("once") end
    watcher:stop()
    watcher:close()
    guard:close()
    uv.run()
    assert.is_false(expired, "the loop never woke for the timeout")
    assert.equal("timeout", got.code)
  end)

  it("reports queueSize, completed, duration, threads and time statistics", function()
    local pool = new { filename = ECHO, minThreads = 2, maxThreads = 2 }
    for i = 1, 100 do pool:run(i) end
    pool:wait()
    assert.equal(100, pool.completed)
    assert.equal(0, pool.queueSize)
    assert.truthy(pool.duration > 0)
    local threads = pool.threads
    assert.equal(2, #threads)
    local total = 0
    for _, t in ipairs(threads) do
      assert.equal("boolean", type(t.busy))
      if t.tasks > 0 then assert.truthy(t.heapBytes > 0) end
      total = total + t.tasks
    end
    assert.equal(100, total)
    for _, s in ipairs({ pool.runTime, pool.waitTime }) do
      for _, k in ipairs({ "min", "max", "mean", "stddev", "p50", "p90", "p99" }) do
        assert.equal("number", type(s[k]), k)
      end
      assert.truthy(s.min <= s.p50 and s.p50 <= s.p99 and s.p99 <= s.max)
    end
    local u = pool.utilization
    assert.truthy(u >= 0 and u <= 1)
    assert.is_false(pool.needsDrain)
  end)
end)

describe("garbage collection", function()
  -- Worker threads are named "luapool" (those given up on, "luapool-stuck"),
  -- so other threads of this process (sanitizers', detached ones) do not count.
  it("destroys a pool nobody references", function()
    -- /proc/self/task through lfs (busted needs it): no child process, which
    -- a sanitizer's preloaded runtime would follow
    local okfs, lfs = pcall(require, "lfs")
    if not okfs or not io.open("/proc/self/task") then pending("no lfs or /proc") return end
    local function count()
      local n = 0
      for tid in lfs.dir("/proc/self/task") do
        local f = tid:match("^%d+$") and io.open("/proc/self/task/" .. tid .. "/comm")
        if f then
          if f:read("*l") == "luapool" then n = n + 1 end
          f:close()
        end
      end
      return n
    end
    -- pools earlier specs left unreferenced go first: a collection while this
    -- one runs would end their threads between the counts
    collectgarbage()
    collectgarbage()
    local before = count()
    do
      local pool = luapool.new { filename = ECHO, minThreads = 3, maxThreads = 3 }
      assert.equal(2, pool:run(2):get())
      assert.equal(before + 3, count())
    end
    collectgarbage()
    collectgarbage()
    assert.equal(before, count())
  end)
end)
