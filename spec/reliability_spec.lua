-- Fixes from the adversarial reliability probe (issue 12): each spec here
-- failed before its fix.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local it_threads = helpers.threads_only(it, pending)
local gate = require "spec.support.gate"
local raised = helpers.raised
local unpack = table.unpack or unpack

local scope = helpers.scope({ quiet_destroy = true })
after_each(scope.cleanup)
local new = scope.new_pool

describe("reliability", function()
  describe("terminateTimeout with no limit", function()
    -- destroy used to mark the workers joined without joining them, then free
    -- the pool under them: a use-after-free in most runs of this loop.
    -- (fewer rounds with process workers: each round starts six processes)
    local rounds = helpers.RUNTIME == "process" and 10 or 60
    for _, forever in ipairs({ math.huge, 1e12 }) do
      it(("destroy waits for every worker (terminateTimeout = %g)"):format(forever), function()
        for i = 1, rounds do
          local pools = {}
          for k = 1, 3 do
            pools[k] = luapool.new { handler = function(x) return x end, minThreads = 2,
                                     maxThreads = 2, terminateTimeout = forever }
          end
          for k = 1, 3 do assert.equal(i + k, pools[k]:run(i + k):get()) end
          for k = 1, 3 do pools[k]:destroy() end
        end
      end)
    end

    it("destroy interrupts a running task and waits for its worker", function()
      local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1,
                         terminateTimeout = math.huge }
      local g = scope.new_gate()
      local blocked = pool:run(g)
      gate.wait_started(blocked, g)
      pool:destroy()
      assert.equal("terminated", helpers.rejection(blocked).code)
    end)
  end)

  describe("option ranges", function()
    it("refuses values out of range, naming the option and its range", function()
      local cases = {
        { { maxThreads = math.huge }, "options.maxThreads must be an integer from 1 to 4096" },
        { { minThreads = 2 ^ 31 }, "options.minThreads must be an integer from 0 to 4096" },
        { { maxThreads = 1e8 }, "options.maxThreads must be an integer from 1 to 4096" },
        { { maxQueue = 1e300 }, "options.maxQueue must be an integer from 0 to 9007199254740992" },
        { { resourceLimits = { maxHeapBytes = math.huge } }, "options.resourceLimits.maxHeapBytes" },
        { { resourceLimits = { maxHeapBytes = 10 } }, "from 262144 to" },
        { { maxMemoryLimitBeforeRecycle = math.huge }, "options.maxMemoryLimitBeforeRecycle" },
        { { idleTimeout = 0 / 0 }, "options.idleTimeout must be a non-negative number" },
        { { terminateTimeout = -1 }, "options.terminateTimeout must be a non-negative number" },
        { { runtime = "fibers" }, 'options.runtime must be one of "child_process"' },
      }
      for _, c in ipairs(cases) do
        local err = raised(luapool.new, c[1])
        assert.equal("invalid_option", err.code)
        assert.truthy(err.message:find(c[2], 1, true), err.message)
      end
    end)

    it("accepts the edges of each range and math.huge where it means no limit", function()
      local pool = new { handler = function(x) return x end, minThreads = 0, maxThreads = 1,
                         maxQueue = math.huge, idleTimeout = math.huge,
                         resourceLimits = { maxHeapBytes = 262144 },
                         runtime = "worker_threads" }
      assert.equal(7, pool:run(7):get())
      assert.equal("threads", pool.options.runtime)
    end)
  end)

  describe("durations and arguments", function()
    it("refuses NaN and negative timeouts with invalid_argument instead of spinning", function()
      local pool = new { handler = function(x) return x end, minThreads = 1, maxThreads = 1 }
      local t = pool:run(1)
      for _, bad in ipairs({ 0 / 0, -1, "10" }) do
        assert.equal("invalid_argument", raised(t.wait, t, bad).code)
        assert.equal("invalid_argument", raised(pool.wait, pool, bad).code)
        assert.equal("invalid_argument", raised(pool.poll, pool, bad).code)
      end
      local e = raised(t.wait, t, 0 / 0)
      assert.truthy(e.message:find("task:wait: timeout must be a non-negative number", 1, true))
      assert.is_true(t:wait(math.huge))
      assert.equal(1, t:get())
    end)

    it("raises invalid_argument for bad arguments, and says so for a dot instead of a colon", function()
      local pool = new { handler = function(x) return x end, minThreads = 1, maxThreads = 1 }
      local t = pool:run(1)
      local cases = {
        { pool.on, pool, "nope", print },
        { pool.on, pool, "drain", 42 },
        { t.onDone, t, "not a function" },
        { pool.map, pool, 5 },
        { pool.run, 5 },
        { t.get },
      }
      for _, c in ipairs(cases) do
        local e = raised(unpack(c))
        assert.equal("invalid_argument", e.code)
      end
      local e = raised(pool.run, 7)
      assert.equal("pool.run: call it with a colon: pool:run(...)", e.message)
      assert.truthy(raised(pool.on, pool, "nope", print).message:find('unknown event "nope"', 1, true))
    end)
  end)

  describe("callbacks run only where documented, one at a time", function()
    it("task:status() settles a task without running its callbacks", function()
      local pool = new { handler = function(x) return x end, minThreads = 1, maxThreads = 1 }
      local t = pool:run(1)
      local fired = 0
      t:onDone(function() fired = fired + 1 end)
      local deadline = os.time() + 60
      while t:status() ~= "fulfilled" do assert(os.time() < deadline, "never fulfilled") end
      assert.equal(0, fired)
      pool:poll()
      assert.equal(1, fired)
    end)

    it("a second onDone does not run inside the first when the first calls get()", function()
      local pool = new { handler = function(x) return x end, minThreads = 1, maxThreads = 1 }
      local t, other = pool:run(1), pool:run(2)
      local log = {}
      t:onDone(function()
        log[#log + 1] = "first begins"
        assert.equal(2, other:get())
        log[#log + 1] = "first ends"
      end)
      t:onDone(function() log[#log + 1] = "second" end)
      other:onDone(function() log[#log + 1] = "other" end)
      pool:wait()
      assert.same({ "first begins", "first ends", "second", "other" }, log)
    end)

    it("events are not fired inside task:status() either", function()
      local pool = new { handler = function(x) require("luapool").postMessage(x) return x end,
                         minThreads = 1, maxThreads = 1 }
      local got = {}
      pool:on("message", function(v) got[#got + 1] = v end)
      local t = pool:run("hi")
      local deadline = os.time() + 60
      while t:status() ~= "fulfilled" do assert(os.time() < deadline, "never fulfilled") end
      assert.same({}, got)
      pool:poll()
      assert.same({ "hi" }, got)
    end)

    it("poll() returns how many tasks it settled, not worker events", function()
      local pool = new { handler = function(x) return x end, minThreads = 2, maxThreads = 2 }
      local created = 0
      pool:on("workerCreate", function() created = created + 1 end)
      helpers.poll_until(pool, function() return created == 2 end, "two workers")
      assert.equal(0, pool:poll())
      local t = pool:run(1)
      local n, deadline = 0, os.time() + 60
      while n == 0 and os.time() < deadline do n = pool:poll(1000) end
      assert.equal(1, n)
      assert.equal("fulfilled", t:status())
    end)
  end)

  describe("destroyed pools", function()
    it("runAll raises destroyed like run and map", function()
      local pool = new { handler = function(x) return x end, minThreads = 1, maxThreads = 1 }
      pool:destroy()
      assert.equal("destroyed", raised(pool.runAll, pool, 1).code)
      assert.equal("destroyed", raised(pool.run, pool, 1).code)
    end)

    it("a pool collected by __gc gives its workers terminateTimeout, not the default", function()
      if helpers.RUNTIME == "process" and not helpers.can_host() then
        -- the worker process hands the TSan preload on to os.execute's /bin/sh
        pending("os.execute in a process worker under TSan")
        return
      end
      local started = helpers.tmpname()
      local pool = luapool.new { minThreads = 1, maxThreads = 1, terminateTimeout = 50,
        handler = function(path)  -- blocks in C, where no interrupt reaches it
          io.open(path, "w"):close()
          os.execute("sleep 1")
        end }
      pool:run(started)
      local deadline = os.time() + 60
      while not helpers.exists(started) do assert(os.time() < deadline, "never started") end
      pool = nil  -- luacheck: ignore 311
      local t0 = luapool.now and luapool.now() or require("luapool.core").now()
      collectgarbage()
      collectgarbage()
      local elapsed = (luapool.now and luapool.now() or require("luapool.core").now()) - t0
      os.remove(started)
      assert.is_true(elapsed < 700, ("__gc took %.0f ms"):format(elapsed))
    end)
  end)

  describe("signals", function()
    local has_ffi = pcall(require, "ffi")

    it("workers leave the host's signals to the host's threads", function()
      if not has_ffi then pending("needs LuaJIT's FFI to block a signal") return end
      if not helpers.can_host() then pending("no child processes under TSan") return end
      -- The host blocks SIGUSR1 to take it with sigtimedwait; a worker that
      -- left it unblocked would receive it and die of it, with the process.
      local h = helpers.host([[
        local ffi = require "ffi"
        ffi.cdef[=[
          typedef struct { unsigned long val[16]; } lp_sigset;
          int sigemptyset(lp_sigset *); int sigaddset(lp_sigset *, int);
          int pthread_sigmask(int, const lp_sigset *, lp_sigset *);
          int kill(int, int); int getpid(void);
          typedef struct { long s, ns; } lp_timespec;
          int sigtimedwait(const lp_sigset *, void *, const lp_timespec *);
        ]=]
        local luapool = require "luapool"
        local pool = luapool.new { handler = function(x) return x end, minThreads = 4, maxThreads = 4 }
        for _, t in ipairs(pool:runAll(1)) do assert(t:get() == 1) end
        -- blocked once the workers exist, as a host sets up signalfd later
        local SIGUSR1, SIG_BLOCK = 10, 0
        local set = ffi.new("lp_sigset")
        ffi.C.sigemptyset(set)
        ffi.C.sigaddset(set, SIGUSR1)
        assert(ffi.C.pthread_sigmask(SIG_BLOCK, set, nil) == 0)
        for _ = 1, 20 do ffi.C.kill(ffi.C.getpid(), SIGUSR1) end
        for i = 1, 50 do assert(pool:run(i):get() == i) end
        local got = ffi.C.sigtimedwait(set, nil, ffi.new("lp_timespec", 5, 0))
        print("took", got)
        pool:destroy()
      ]])
      local out, status = helpers.host_finish(h)
      assert.equal(0, status, out)
      assert.truthy(out:find("took\t10", 1, true), out)
    end)

    -- process workers are interrupted with a signal to their own process
    it_threads("never takes a real-time signal the host handles or ignores", function()
      if not has_ffi then pending("needs LuaJIT's FFI to set a disposition") return end
      local ffi = require "ffi"
      pcall(ffi.cdef, "void *signal(int, void *);")
      local SIG_IGN = ffi.cast("void *", 1)
      local first = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
      local taken = first.interruptSignal
      -- the host ignores the signal the first pool uses; a new pool must not
      -- take it back, and must still interrupt its workers
      local before = ffi.C.signal(taken, SIG_IGN)
      assert.is_true(ffi.cast("intptr_t", before) > 1)  -- it was our handler
      local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1,
                         terminateTimeout = 30000 }
      assert.is_true(pool.interruptSignal ~= taken)
      local errors, destroyed = {}, 0
      pool:on("error", function(e) errors[#errors + 1] = e end)
      pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
      local g = scope.new_gate()
      local t = pool:run(g)
      gate.wait_started(t, g)
      assert.is_true(t:cancel())
      helpers.poll_until(pool, function() return destroyed == 1 end, "the worker to stop")
      assert.same({}, errors)
      assert.equal(1, ffi.cast("intptr_t", ffi.C.signal(taken, SIG_IGN)))  -- still the host's
      -- the first pool finds its signal taken over: it says so, once
      local ferrors = {}
      first:on("error", function(e) ferrors[#ferrors + 1] = e end)
      local g2 = scope.new_gate()
      local t2 = first:run(g2)
      gate.wait_started(t2, g2)
      assert.is_true(t2:cancel())
      assert.equal("aborted", helpers.rejection(t2).code)
      helpers.poll_until(first, function() return #ferrors > 0 end, "an error event")
      assert.equal("worker_error", ferrors[1].code)
      assert.truthy(ferrors[1].message:find("interrupt signal", 1, true), ferrors[1].message)
    end)

    it("Ctrl-C while the host waits in get() interrupts the host, not the task's value", function()
      -- The task sends the host SIGINT once the host's main thread sleeps in
      -- get(), then returns; the interpreter's hook must fire as the
      -- interrupt it is, not fail the decoding of the result.
      if not helpers.can_host() then pending("no child processes under TSan") return end
      local h = helpers.host([[
        local pid = io.open("/proc/self/stat"):read("*l"):match("^%d+")
        local luapool = require "luapool"
        local pool = luapool.new { minThreads = 1, maxThreads = 1, handler = function(host)
          local deadline = os.time() + 60
          repeat
            local f = io.open("/proc/" .. host .. "/stat")
            local state = f and f:read("*l"):match("%) (%a)")
            if f then f:close() end
          until state == "S" or os.time() > deadline
          io.popen("kill -INT " .. host):close()  -- not os.execute: system() ignores SIGINT
          return "value"
        end }
        local t = pool:run(pid)
        local v = t:get()
        print("get returned", v)
      ]])
      local out, status = helpers.host_finish(h)
      assert.truthy(out:find("interrupted!", 1, true), out)
      assert.falsy(out:find("get returned", 1, true), out)
      assert.falsy(out:find("serialize", 1, true), out)
      assert.is_true(status ~= 0, out)
    end)
  end)

  describe("recycleWorkers", function()
    it("gives up waiting after its timeout, and the busy worker is replaced when its task ends", function()
      local pool = new { filename = gate.BLOCK, minThreads = 2, maxThreads = 2 }
      local destroyed = 0
      pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
      local g = scope.new_gate("done")
      local busy = pool:run(g)
      gate.wait_started(busy, g)
      assert.is_false(pool:recycleWorkers({ timeout = 50 }))
      helpers.poll_until(pool, function() return destroyed == 1 end, "the idle worker's end")
      assert.equal("running", busy:status())
      gate.release(g)
      assert.equal("done", (busy:get()))
      helpers.poll_until(pool, function() return destroyed == 2 end, "the busy worker's end")
      assert.is_true(pool:recycleWorkers({ timeout = math.huge }))
      assert.equal(4, destroyed)
      assert.equal("invalid_option", raised(pool.recycleWorkers, pool, { timeout = -1 }).code)
    end)
  end)

  describe("postMessage while the host does not poll", function()
    local function flood(t)
      local view = require "luapool"  -- the worker's
      for i = 1, t.n do view.postMessage(i) end
      io.open(t.done, "w"):close()
      return t.n
    end

    it("blocks the worker at the bound, and every message arrives in order", function()
      local done = scope.tmpname()
      local pool = new { handler = flood, minThreads = 1, maxThreads = 1 }
      local got, ordered = 0, true
      pool:on("message", function(v) got = got + 1; ordered = ordered and v == got end)
      local t = pool:run({ n = 30000, done = done })
      -- not polling: the worker must stop at 10000 messages and wait
      local now = require("luapool.core").now
      local t0 = now()
      while now() - t0 < 500 do assert.is_false(helpers.exists(done)) end
      assert.equal(30000, t:get())
      pool:poll()
      assert.equal(30000, got)
      assert.is_true(ordered)
    end)

    it("a task blocked in postMessage can still be cancelled", function()
      local done = scope.tmpname()
      local pool = new { handler = flood, minThreads = 1, maxThreads = 1 }
      local t = pool:run({ n = 1e9, done = done })
      helpers.poll_until(pool, function() return t:status() == "running" end, "the task to run")
      assert.is_true(t:cancel())
      assert.equal("aborted", helpers.rejection(t).code)
      assert.equal(5, pool:run(5, { handler = function(x) return x end }):get())
    end)
  end)

  describe("os.exit in a worker", function()
    it("reports the code it was given, whatever its size", function()
      local pool = new { handler = function(c) os.exit(c) end, minThreads = 1, maxThreads = 1 }
      local e = helpers.rejection(pool:run(1e10))
      assert.equal("worker_exited", e.code)
      assert.equal("Worker exited with code 10000000000", e.message)
      assert.equal(1e10, e.value)
      e = helpers.rejection(pool:run(3))
      assert.equal("Worker exited with code 3", e.message)
      assert.equal("3", tostring(e.value))
    end)
  end)

  describe("a task file whose top level never returns", function()
    local LOOP = "spec/fixtures/rb_loop_on_load.lua"

    it("is stopped after loadTimeout: its tasks reject with load_error, and error fires", function()
      local pool = new { filename = LOOP, minThreads = 1, maxThreads = 1, loadTimeout = 100 }
      local errors = {}
      pool:on("error", function(e) errors[#errors + 1] = e end)
      local a, b = pool:run(1), pool:run(2)
      for _, t in ipairs({ a, b }) do
        local e = helpers.rejection(t)
        assert.equal("load_error", e.code)
        assert.truthy(e.message:find("did not finish loading within 100 ms (loadTimeout)", 1, true),
                      e.message)
      end
      pool:poll()
      assert.is_true(#errors >= 1)
      assert.truthy(errors[1].message:find("rb_loop_on_load.lua", 1, true))
      local e = raised(pool.run, pool, 3)
      assert.equal("load_error", e.code)
      pool:destroy()  -- the worker stopped: no thread left behind
    end)

    it("a compiled loop that takes no interrupt is given up on after terminateTimeout", function()
      if not jit then pending("PUC Lua interrupts every loop") return end
      local path = scope.tmpname()
      local f = assert(io.open(path, "w"))
      -- spins for about a second in one trace (no hooks), then returns
      f:write("local x = 0 for i = 1, 3e9 do x = x + i end return function() return x end\n")
      f:close()
      local pool = new { filename = path, minThreads = 1, maxThreads = 1, loadTimeout = 50,
                         terminateTimeout = 50 }
      local errors = {}
      pool:on("error", function(e) errors[#errors + 1] = e.message end)
      assert.equal("load_error", helpers.rejection(pool:run(1)).code)
      helpers.poll_until(pool, function()
        for _, m in ipairs(errors) do
          if m:find(helpers.RUNTIME == "process" and "its process is killed"
                    or "its thread is detached", 1, true) then return true end
        end
      end, "the give-up event")
    end)

    it("loadTimeout is validated and shown in pool.options", function()
      assert.equal("invalid_option", raised(luapool.new, { loadTimeout = -5 }).code)
      local pool = new { handler = function(x) return x end, minThreads = 1, maxThreads = 1 }
      assert.equal(60000, pool.options.loadTimeout)
    end)
  end)
end)
