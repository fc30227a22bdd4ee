-- What only the process runtime does: choosing it, a worker process that crashes,
-- exits or breaks its pipe, a loop that takes no interrupt killed with its process,
-- env, the version handshake, and being a good citizen in the host (its own pids
-- only, no process left behind). The rest of the suite runs under the process
-- runtime too (make test-process).
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local rejection, poll_until = helpers.rejection, helpers.poll_until
local jit = rawget(_G, "jit")

local FAULTS = "spec/fixtures/pr_faults.lua"

-- kill -<sig> pid, from the host.
local function send(pid, sig) assert.is_true(helpers.kill(pid, sig), "kill -" .. sig .. " " .. pid) end

local function kill9(pid) send(pid, 9) end

-- A process's state letter in /proc/<pid>/stat (R, S, T, Z...), or nil once gone.
local function state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local stat = f:read("*a")  -- nil when it ended after the open
  f:close()
  return stat and stat:match("^%d+ %b() (%a)")
end

-- Whether a process runs: /proc/<pid> exists and is not a zombie.
local function running(pid)
  local s = state(pid)
  return s ~= nil and s ~= "Z"
end

-- The number a task wrote to path, once it is there.
local function read_pid(pool, path)
  local pid
  poll_until(pool, function()
    local f = io.open(path)
    pid = f and tonumber(f:read("*a"))
    if f then f:close() end
    return pid ~= nil
  end, "the worker's pid in " .. path)
  return pid
end

-- Waits (up to 60 s, looking every 10 ms) until no process runs as pid.
local function until_gone(pid)
  local deadline = os.time() + 60
  while running(pid) do
    assert(os.time() < deadline, "process " .. pid .. " still runs after 60 s")
    os.execute("sleep 0.01")
  end
end

-- The host's environment, with the sanitizers told to leave SIGSEGV alone (their
-- handler would turn a worker's crash into an abort).
local function env_without_segv_handler()
  local f = assert(io.open("/proc/self/environ", "rb"))
  local env = {}
  for k, v in f:read("*a"):gmatch("([^=%z]+)=([^%z]*)%z") do env[k] = v end
  f:close()
  for _, k in ipairs { "ASAN_OPTIONS", "TSAN_OPTIONS" } do
    env[k] = (env[k] and env[k] .. ":" or "") .. "handle_segv=0"
  end
  return env
end

describe("process runtime", function()
  local scope = helpers.scope { quiet_destroy = true }
  after_each(scope.cleanup)
  local new_pool, tmpname = scope.new_pool, scope.tmpname

  local function new(options)
    options.runtime = options.runtime or "process"
    options.filename = options.filename or FAULTS
    return new_pool(options)
  end

  describe("choosing", function()
    it("takes Tinypool's names too and shows the resolved one in options.runtime", function()
      for name, resolved in pairs { process = "process", child_process = "process",
                                    threads = "threads", worker_threads = "threads" } do
        local pool = new { runtime = name, minThreads = 1, maxThreads = 1 }
        assert.equal(resolved, pool.options.runtime)
        local main, worker, id, runtime = pool:run(nil, { name = "view" }):get()
        assert.same({ false, true, 1, resolved }, { main, worker, id, runtime })
        pool:destroy()
      end
      local e = helpers.raised(luapool.new, { runtime = "fibers" })
      assert.equal("invalid_option", e.code)
      assert.truthy(e.message:find("options.runtime", 1, true))
    end)

    it("runs each worker in a process of its own, not the host's", function()
      local pool = new { minThreads = 2, maxThreads = 2 }
      local pids = {}
      for _, t in ipairs(pool:runAll(nil, { name = "pid" })) do pids[#pids + 1] = t:get() end
      assert.equal(2, #pids)
      assert.are_not.equal(pids[1], pids[2])
      local self = io.open("/proc/self/stat"):read("*l"):match("^(%d+)")
      for _, pid in ipairs(pids) do
        assert.are_not.equal(tonumber(self), pid)
        assert.is_true(running(pid))
      end
    end)

    it("switches every worker with recycleWorkers { runtime = ... }, both ways", function()
      local pool = new { minThreads = 2, maxThreads = 2 }
      local function runtimes()
        local seen = {}
        for _, t in ipairs(pool:runAll(nil, { name = "view" })) do
          seen[#seen + 1] = select(4, t:get())
        end
        return seen
      end
      assert.same({ "process", "process" }, runtimes())
      pool:recycleWorkers { runtime = "threads" }
      assert.equal("threads", pool.options.runtime)
      assert.same({ "threads", "threads" }, runtimes())
      pool:recycleWorkers { runtime = "child_process" }
      assert.equal("process", pool.options.runtime)
      assert.same({ "process", "process" }, runtimes())
    end)
  end)

  describe("faults", function()
    -- Runs the named fault on a one-worker pool with a task queued behind it: only
    -- the faulting task is rejected, with worker_exited and a message matching cause;
    -- the queued one runs on the new worker.
    local function fault(name, cause, value, env)
      local pool = new { minThreads = 1, maxThreads = 1, env = env }
      local created, destroyed = 0, 0
      pool:on("workerCreate", function() created = created + 1 end)
      pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
      local first = pool:run(nil, { name = "pid" }):get()
      local bad = pool:run(value, { name = name })
      local after = pool:run(nil, { name = "pid" })
      local e = rejection(bad)
      assert.equal("worker_exited", e.code)
      assert.truthy(e.message:find(cause), e.message)
      assert.equal(1, e.workerId)
      local second = after:get()
      assert.are_not.equal(first, second)
      poll_until(pool, function() return destroyed >= 1 and created >= 2 end, "a new worker")
      assert.is_false(running(first))
      return e
    end

    it("rejects a task whose worker dereferences NULL through the FFI: killed by SIGSEGV", function()
      if not jit then pending("LuaJIT's FFI") return end
      fault("segv", "^Worker exited unexpectedly: killed by SIGSEGV$", nil, env_without_segv_handler())
    end)

    it("rejects a task whose worker calls abort(): killed by SIGABRT", function()
      if not jit then pending("LuaJIT's FFI") return end
      fault("abort", "^Worker exited unexpectedly: killed by SIGABRT$")
    end)

    it("rejects a task that calls os.exit(3) with its code, as threads do", function()
      local e = fault("exit", "^Worker exited with code 3$", 3)
      assert.equal(3, e.value)
    end)

    it("rejects a task whose process really exits: exited with status 3", function()
      if not jit then pending("LuaJIT's FFI") return end
      fault("exit_now", "^Worker exited unexpectedly: exited with status 3$", 3)
    end)

    it("rejects a task whose worker writes a corrupt frame, and kills that worker", function()
      fault("corrupt", "^Worker exited unexpectedly: it sent a corrupt frame %(killed by SIGKILL%)$")
    end)

    it("rejects a task whose worker writes a truncated frame and ends", function()
      if not jit then pending("LuaJIT's FFI") return end
      -- it may have ended before the host killed it
      fault("truncated", "^Worker exited unexpectedly: it sent a corrupt frame %(.+%)$")
    end)

    it("rejects a task whose worker ends after the first part of a long result", function()
      if not jit then pending("LuaJIT's FFI") return end
      -- the main thread is reading the part when the end comes (the task's id is 2)
      fault("part_then_exit", "^Worker exited unexpectedly: exited with status 0$", 2)
    end)

    it("times out a task whose worker stops after the first part of its result", function()
      if not jit then pending("LuaJIT's FFI") return end
      -- the main thread reads a process worker's result once it is whole: it is free to
      -- time the task out, and the pool kills the stopped child (the task's id is 2)
      local pool = new { minThreads = 1, maxThreads = 1, terminateTimeout = 50 }
      pool:run(nil, { name = "pid" }):get()
      local e = rejection(pool:run(2, { name = "part_then_stop", timeout = 200 }))
      assert.equal("timeout", e.code)
      assert.is_number(pool:run(nil, { name = "pid" }):get())
    end)

    it("rejects a task whose worker sends empty parts of its result", function()
      -- a flush always has bytes: an empty PART is corrupt (else endless ones grow the host)
      fault("empty_parts", "^Worker exited unexpectedly: it sent a corrupt frame %(.+%)$", 2)
    end)

    it("rejects a task whose worker closes its pipe", function()
      if not jit then pending("LuaJIT's FFI") return end
      fault("close_pipe", "^Worker exited unexpectedly: exited with status %d+$")
    end)

    it("rejects a task whose worker is killed from outside with kill -9", function()
      local pool = new { minThreads = 1, maxThreads = 1 }
      local path, release = tmpname(), tmpname()
      local t = pool:run({ path = path, release = release }, { name = "block" })
      local queued = pool:run(nil, { name = "pid" })
      local pid = read_pid(pool, path)
      kill9(pid)
      local e = rejection(t)
      assert.equal("worker_exited", e.code)
      assert.equal("Worker exited unexpectedly: killed by SIGKILL", e.message)
      assert.are_not.equal(pid, queued:get())
      assert.is_false(running(pid))
    end)
  end)

  it("runs the next task on a new worker when an idle one was killed from outside", function()
    local pool = new { minThreads = 1, maxThreads = 1 }
    local pid = pool:run(nil, { name = "pid" }):get()
    kill9(pid)
    poll_until(pool, function() return not running(pid) end, "the idle worker to die")
    -- The task goes back to the queue and runs on a new worker: its write met a
    -- closed pipe, or (the dead process's files not closed yet when /proc showed it
    -- a zombie) its frame was still unread in the pipe when the output ended.
    assert.are_not.equal(pid, pool:run(nil, { name = "pid" }):get())
  end)

  it("runs a task on a new worker when its worker died before reading it", function()
    local pool = new { minThreads = 1, maxThreads = 1 }
    local pid = pool:run(nil, { name = "pid" }):get()
    send(pid, 19)  -- SIGSTOP: it reads nothing more
    poll_until(pool, function()
      local seen = state(pid)
      assert(seen, "the worker process ended instead of stopping")
      return seen == "T"
    end, "the worker to stop")
    local t = pool:run(nil, { name = "pid" })
    poll_until(pool, function() return t:status() == "running" end, "the task to be taken")
    local until_ms = luapool.now() + 100  -- time for its frame to be written to the pipe
    poll_until(pool, function() return luapool.now() >= until_ms end)
    kill9(pid)
    assert.are_not.equal(pid, t:get())  -- not worker_exited: it never started
  end)

  it("loads no function a worker process sends: the task fails with serialize", function()
    local pool = new { minThreads = 1, maxThreads = 1, handler = function() return function() end end }
    local e = rejection(pool:run())
    assert.equal("serialize", e.code)
    assert.truthy(e.message:find("a function cannot come from another process", 1, true), e.message)
  end)

  describe("stopping", function()
    -- Runs "spin" (a loop LuaJIT compiles, which takes no interrupt) on pool;
    -- returns the task and its worker process's pid, once it loops.
    local function spin(pool, options)
      local path = tmpname()
      options = options or {}
      options.name = "spin"
      local t = pool:run(path, options)
      return t, read_pid(pool, path)
    end

    it("kills a worker in a loop that takes no interrupt after terminateTimeout", function()
      local pool = new { minThreads = 1, maxThreads = 1, terminateTimeout = 50 }
      local errors, destroyed = {}, 0
      pool:on("error", function(e) errors[#errors + 1] = e end)
      pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
      local ctl = luapool.AbortController()
      local t, pid = spin(pool, { signal = ctl.signal })
      ctl:abort()  -- (a run timeout takes the same path: the process suite runs those specs)
      assert.equal("aborted", rejection(t).code)
      poll_until(pool, function() return destroyed >= 1 end, "the worker to be replaced")
      assert.is_false(running(pid))  -- reaped: its CPU is gone with it
      assert.same({}, errors)        -- nothing was left running
      assert.equal("number", type(pool:run(nil, { name = "pid" }):get()))
    end)

    it("cancels a running task the same way", function()
      local pool = new { minThreads = 1, maxThreads = 1, terminateTimeout = 50 }
      local t, pid = spin(pool)
      assert.is_true(t:cancel())
      assert.equal("aborted", rejection(t).code)
      poll_until(pool, function() return not running(pid) end, "the process to be killed")
    end)

    it("destroys a pool whose worker loops, without hanging or leaving it behind", function()
      local pool = new { minThreads = 1, maxThreads = 1, terminateTimeout = 50 }
      local t, pid = spin(pool)
      pool:destroy()  -- raises no terminate_timeout: nothing is left running
      assert.equal("terminated", rejection(t).code)
      assert.is_false(running(pid))
      assert.is_nil(io.open("/proc/" .. pid .. "/stat"), "a zombie was left behind")
    end)

    it("leaves no process and no zombie after destroy", function()
      local pool = new { minThreads = 3, maxThreads = 3 }
      local pids = {}
      for _, t in ipairs(pool:runAll(nil, { name = "pid" })) do pids[#pids + 1] = t:get() end
      pool:destroy()
      for _, pid in ipairs(pids) do
        assert.is_nil(io.open("/proc/" .. pid .. "/stat"), "process " .. pid .. " is still there")
      end
    end)
  end)

  describe("env", function()
    it("is exactly the workers' environment when given", function()
      local pool = new { minThreads = 1, maxThreads = 1, env = { LUAPOOL_SPEC = "yes", N = 42 } }
      assert.equal("yes", pool:run("LUAPOOL_SPEC", { name = "env" }):get())
      assert.equal("42", pool:run("N", { name = "env" }):get())
      assert.is_nil(pool:run("PATH", { name = "env" }):get())
    end)

    it("is the host's by default", function()
      local pool = new { minThreads = 1, maxThreads = 1 }
      assert.equal(os.getenv("PATH"), pool:run("PATH", { name = "env" }):get())
    end)

    it("is refused for threads, whose environment is the host's", function()
      local e = helpers.raised(luapool.new, { runtime = "threads", env = { A = "1" } })
      assert.equal("invalid_option", e.code)
      assert.truthy(e.message:find("options.env", 1, true))
      if helpers.RUNTIME == "threads" then  -- the default runtime
        e = helpers.raised(luapool.new, { env = { A = "1" } })
        assert.equal("invalid_option", e.code)
      end
      e = helpers.raised(luapool.new, { runtime = "process", env = { ["A=B"] = "1" } })
      assert.equal("invalid_option", e.code)
    end)
  end)

  it("refuses a worker program built for another Lua with load_error", function()
    -- LUAPOOL_WORKER_FAKE_LUA is the worker program's test hook: it claims that version
    local pool = new { minThreads = 1, maxThreads = 1, env = { LUAPOOL_WORKER_FAKE_LUA = "400" } }
    local errors = {}
    pool:on("error", function(e) errors[#errors + 1] = e end)
    local ok, e = pcall(function() return pool:run(nil, { name = "pid" }):get() end)
    assert.is_false(ok)
    assert.equal("load_error", e.code)
    assert.truthy(e.message:find("cannot serve this host: it runs ", 1, true), e.message)
    poll_until(pool, function() return #errors >= 1 end, "the error event")
    e = helpers.raised(pool.run, pool, nil, { name = "pid" })  -- and from then on at once
    assert.equal("load_error", e.code)
  end)

  it("keeps io.popen and os.execute exit statuses while it works", function()
    if not helpers.can_host() then pending("no host process under TSan or valgrind") return end
    local pool = new { minThreads = 2, maxThreads = 2 }
    local v52 = _VERSION ~= "Lua 5.1"
    for i = 1, 20 do
      local tasks = {}
      for k = 1, 4 do tasks[k] = pool:run(nil, { name = "pid" }) end
      local p = io.popen("exit " .. (i % 5 + 1))
      local a, b, c = p:close()
      local x, y, z = os.execute("exit " .. (i % 7 + 1))
      if v52 or (jit and b ~= nil) then  -- with the 5.2 statuses
        assert.same({ nil, "exit", i % 5 + 1 }, { a, b, c })
        assert.same({ nil, "exit", i % 7 + 1 }, { x, y, z })
      else
        assert.equal((i % 7 + 1) * 256, x)  -- system()'s status, as 5.1 gives it
      end
      for k = 1, 4 do tasks[k]:get() end
    end
  end)

  -- Short tasks go to a worker's process ahead of their turn, many in one write
  -- (rt_process.c); none of that may show. A worker's first tasks are short "pid"
  -- ones, so that it has learnt to send tasks ahead when the tasks under test come.
  describe("tasks sent ahead of their turn", function()
    local function warm(pool)
      local tasks = {}
      for i = 1, 100 do tasks[i] = pool:run(nil, { name = "pid" }) end
      for i = 1, 100 do tasks[i]:get() end
    end

    -- How often each task wrote its index to path.
    local function runs(path)
      local n = {}
      local f = io.open(path)
      if not f then return n end
      for line in f:lines() do n[tonumber(line)] = (n[tonumber(line)] or 0) + 1 end
      f:close()
      return n
    end

    -- 80 marking tasks with a fault among them, all submitted at once behind a
    -- worker that is busy: only the faulting task fails, every other runs once.
    local function fault_among(name, value, message)
      local pool = new { minThreads = 1, maxThreads = 1 }
      local path, gate = tmpname(), { path = tmpname(), release = tmpname() }
      warm(pool)
      local busy = pool:run(gate, { name = "block" })
      read_pid(pool, gate.path)
      local tasks = {}
      for _ = 1, 60 do tasks[#tasks + 1] = pool:run(nil, { name = "pid" }) end
      for i = 1, 40 do tasks[#tasks + 1] = pool:run({ path = path, i = i }, { name = "mark" }) end
      local bad = pool:run(value, { name = name })
      for i = 41, 80 do tasks[#tasks + 1] = pool:run({ path = path, i = i }, { name = "mark" }) end
      helpers.touch(gate.release)
      assert.equal("released", busy:get())
      local e = rejection(bad)
      assert.equal("worker_exited", e.code)
      assert.truthy(e.message:find(message), e.message)
      for _, t in ipairs(tasks) do t:get() end
      local n = runs(path)
      for i = 1, 80 do assert.equal(1, n[i], "task " .. i .. " ran " .. (n[i] or 0) .. " times") end
    end

    it("runs each once when the worker calls os.exit with tasks in its pipe", function()
      fault_among("exit", 3, "^Worker exited with code 3$")
    end)

    it("runs each once when the worker's process dies with tasks in its pipe", function()
      if not jit then pending("LuaJIT's FFI") return end
      fault_among("exit_now", 3, "^Worker exited unexpectedly: exited with status 3$")
    end)

    -- A busy worker with tasks behind it; stop(tasks) stops some of them while it
    -- is busy: they never run, the worker is neither disturbed nor replaced (unless a
    -- task that ends it, `fault`, comes right after the busy one), and the others
    -- run once.
    local function stopped_behind(options, run_options, stop, fault)
      options.minThreads, options.maxThreads = 1, 1
      local pool = new(options)
      local destroyed = 0
      pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
      local path, gate = tmpname(), { path = tmpname(), release = tmpname() }
      warm(pool)
      local tasks = {}
      for i = 1, 40 do tasks[i] = pool:run(nil, { name = "pid" }) end
      local busy = pool:run(gate, { name = "block" })
      local bad = fault and pool:run(3, { name = fault })
      for i = 1, 20 do
        local o = (i == 5 or i == 10 or i == 11) and run_options or {}
        o.name = "mark"
        tasks[40 + i] = pool:run({ path = path, i = i }, o)
      end
      read_pid(pool, gate.path)
      local stopped = stop(pool, { tasks[45], tasks[50], tasks[51] })
      helpers.touch(gate.release)
      assert.equal("released", busy:get())
      for i, t in ipairs(tasks) do
        if i ~= 45 and i ~= 50 and i ~= 51 then t:get() end
      end
      local n = runs(path)
      for i = 1, 20 do
        assert.equal((i == 5 or i == 10 or i == 11) and 0 or 1, n[i] or 0, "task " .. i)
      end
      if bad then
        assert.equal("worker_exited", rejection(bad).code)
      else
        assert.equal(0, destroyed)
      end
      return stopped
    end

    it("never starts one that was cancelled, and leaves its worker be", function()
      local codes = stopped_behind({}, {}, function(_, list)
        local codes = {}
        for _, t in ipairs(list) do
          assert.is_true(t:cancel())
          codes[#codes + 1] = rejection(t).code
        end
        return codes
      end)
      for _, code in ipairs(codes) do assert.truthy(code == "cancelled" or code == "aborted", code) end
    end)

    it("never starts one that was cancelled, even when its worker ends before its turn", function()
      stopped_behind({}, {}, function(_, list)
        for _, t in ipairs(list) do assert.is_true(t:cancel()) end
      end, "exit")
    end)

    it("gives up on one that timed out without killing the worker busy before it", function()
      stopped_behind({ terminateTimeout = 20 }, { timeout = 30 }, function(pool, list)
        for _, t in ipairs(list) do assert.equal("timeout", rejection(t).code) end
        local until_ms = luapool.now() + 200  -- terminateTimeout passes 10 times over
        poll_until(pool, function() return luapool.now() >= until_ms end)
      end)
    end)
  end)

  it("leaves no worker behind when its host is killed with SIGKILL", function()
    if not helpers.can_host() then pending("no host process under TSan or valgrind") return end
    local h = helpers.host([[
      local luapool = require "luapool"
      local pool = luapool.new { runtime = "process", filename = "]] .. FAULTS .. [[",
                                 minThreads = 2, maxThreads = 2 }
      for _, t in ipairs(pool:runAll(nil, { name = "pid" })) do print("worker=" .. t:get()) end
      local busy = pool:run("]] .. tmpname() .. [[", { name = "spin" })
      print("host=" .. io.open("/proc/self/stat"):read("*l"):match("^(%d+)"))
      io.stdout:flush()
      busy:get()
    ]])
    local workers, hostpid = {}, nil
    while not hostpid do
      local line = assert(h:read("*l"), "the host ended early")
      workers[#workers + 1] = tonumber(line:match("^worker=(%d+)$"))
      hostpid = tonumber(line:match("^host=(%d+)$"))
    end
    assert.equal(2, #workers)
    assert.is_true(running(workers[1]) and running(workers[2]) and running(hostpid))
    kill9(hostpid)
    local _, status = helpers.host_finish(h)
    assert.equal(137, status)  -- 128 + SIGKILL
    for _, pid in ipairs(workers) do until_gone(pid) end
  end)
end)
