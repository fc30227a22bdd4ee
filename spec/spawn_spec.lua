-- The programs a task starts (os.execute, io.popen) get the host's signal mask,
-- not the worker thread's, which blocks all but the interrupt signal and the
-- faults (src/spawn.c); os.execute and io.popen give what the plain Lua's give.
-- /bin/sh (dash) clears the mask of the commands it forks, but a command it
-- runs with `exec` before any fork keeps the mask the shell started with (and
-- other shells keep it for every command): the specs `exec` what they look at.
local helpers = require "spec.support.helpers"
local jit = rawget(_G, "jit")
local it_threads = helpers.threads_only(it, pending)

local scope = helpers.scope()
after_each(scope.cleanup)

-- Under a sanitizer (make test-asan, test-tsan) its runtime is preloaded, and
-- TSan's crashes /bin/sh: the preload leaves this process's environment for
-- these specs (LuaJIT's FFI; only LuaJIT runs under the sanitizers).
local preload = os.getenv("LD_PRELOAD")
local ffi = (preload or ""):find("san") and jit and require "ffi"
if ffi then
  pcall(ffi.cdef, "int unsetenv(const char *name); int setenv(const char *, const char *, int);")
end

-- Whether os.execute and a popen file's close give 5.2's results.
-- (Not table.pack: the specs' libraries may have added it.)
local V52 = type(os.execute()) == "boolean"

-- Runs in a worker and in the host: os.execute or io.popen of t.cmd, with
-- everything it returns (n: how many), and for io.popen what it read.
local function start(t)
  local function pack(...) return { n = select("#", ...), ... } end
  if t.how == "execute" then return pack(os.execute(t.cmd)) end
  if t.how == "id" then
    local l = require "luapool"
    return { l.threadId, l.workerId }
  end
  if t.how == "read" then
    local f = assert(io.open(t.path))
    local s = f:read("*a")
    f:close()
    return s
  end
  local f = assert(io.popen(t.cmd, t.mode))
  if t.write then f:write(t.write) end
  if t.pidfile then  -- the first line is the pid: the host may signal it now
    local out = assert(io.open(t.pidfile, "w"))
    out:write(f:read("*l"), "\n")
    out:close()
  end
  local read = t.mode ~= "w" and f:read("*a") or nil
  local r = pack(f:close())
  r.read = read
  return r
end

local function new_pool()
  return scope.new_pool { handler = start, minThreads = 1, maxThreads = 1 }
end

-- A field of a /proc status file's text (a hex signal set for SigBlk, SigIgn).
local function field(text, name)
  local v = text:match("\n" .. name .. ":%s*(%x+)") or text:match("^" .. name .. ":%s*(%x+)")
  assert(v, "no " .. name .. " in " .. text)
  return v
end

local function host_status() return start { how = "read", path = "/proc/self/status" } end

-- Whether every signal in hex set a is in b.
local function within(a, b)
  assert.equal(#a, #b)
  for i = 1, #a do
    local x, y = tonumber(a:sub(i, i), 16), tonumber(b:sub(i, i), 16)
    for _, bit in ipairs { 8, 4, 2, 1 } do
      local in_x, in_y = x >= bit, y >= bit
      if in_x and not in_y then return false end
      if in_x then x = x - bit end
      if in_y then y = y - bit end
    end
  end
  return true
end

local function host_blocked() return field(host_status(), "SigBlk") end  -- the main thread's

local function assert_within_host(blocked, what)
  local host = host_blocked()
  assert.is_true(within(blocked, host), ("%s blocks %s, the host %s"):format(what, blocked, host))
end

-- The pid in path once a task has written it there.
local function pid_in(pool, path)
  local pid
  helpers.poll_until(pool, function()
    local f = io.open(path)
    pid = f and tonumber(f:read("*l") or "")
    if f then f:close() end
    return pid ~= nil
  end, "the command's pid")
  return pid
end

-- The process pid has ended, and was reaped.
local function assert_gone(pid)
  local alive = os.execute("kill -0 " .. pid .. " 2>/dev/null") == (V52 or 0)
  assert.is_false(alive, "the command " .. pid .. " runs on")
end

describe("programs a task starts", function()
  if ffi then
    setup(function() ffi.C.unsetenv("LD_PRELOAD") end)
    teardown(function() ffi.C.setenv("LD_PRELOAD", preload, 1) end)
  end

  it("run under os.execute with no signal blocked that the host does not block", function()
    local pool = new_pool()
    local out = scope.tmpname()
    local r = pool:run { how = "execute", cmd = "exec grep SigBlk /proc/self/status >" .. out }:get()
    assert.same(V52 and { true, "exit", 0, n = 3 } or { 0, n = 1 }, r)
    assert_within_host(field(start { how = "read", path = out }, "SigBlk"), "os.execute's command")
    if helpers.RUNTIME == "threads" then  -- what glibc's system() would have given it
      local mine = field(pool:run { how = "read", path = "/proc/thread-self/status" }:get(), "SigBlk")
      assert.is_false(within(mine, host_blocked()), "the worker thread blocks " .. mine)
    end
  end)

  it_threads("get the mask of the thread that made the pool, as it was then", function()
    if not jit then pending("the host's mask is set through LuaJIT's FFI") return end
    local FFI = require "ffi"
    pcall(FFI.cdef, [[
      typedef struct { unsigned long bits[16]; } spawn_spec_sigset;
      int sigemptyset(spawn_spec_sigset *set);
      int sigaddset(spawn_spec_sigset *set, int sig);
      int pthread_sigmask(int how, const spawn_spec_sigset *set, spawn_spec_sigset *old);
    ]])
    local SIG_BLOCK, SIG_SETMASK, SIGUSR1 = 0, 2, 10
    local before = host_blocked()
    local usr1, old = FFI.new("spawn_spec_sigset"), FFI.new("spawn_spec_sigset")
    FFI.C.sigemptyset(usr1)
    FFI.C.sigaddset(usr1, SIGUSR1)
    assert.equal(0, FFI.C.pthread_sigmask(SIG_BLOCK, usr1, old))
    local made, pool = pcall(new_pool)
    FFI.C.pthread_sigmask(SIG_SETMASK, old, nil)  -- the host blocks SIGUSR1 no longer
    assert(made, pool)
    assert.equal(before, host_blocked())
    local digit = tonumber(before:sub(-3, -3), 16)  -- SIGUSR1 is 0x200
    if digit % 4 < 2 then digit = digit + 2 end
    local r = pool:run { how = "popen", cmd = "exec grep SigBlk /proc/self/status" }:get()
    assert.equal(before:sub(1, -4) .. ("%x"):format(digit) .. before:sub(-2), field(r.read, "SigBlk"))
  end)

  it("run under io.popen with no signal blocked that the host does not block", function()
    local pool = new_pool()
    local t = { how = "popen", cmd = "exec grep SigBlk /proc/self/status" }
    local r, plain = pool:run(t):get(), start(t)
    assert.truthy(r.read:match("^SigBlk:%s*%x+%s*$"), r.read)
    assert_within_host(field(r.read, "SigBlk"), "io.popen's command")
    plain.read, r.read = nil, nil
    assert.same(V52 and { true, "exit", 0, n = 3 } or { true, n = 1 }, r)
    assert.same(plain, r)
  end)

  it("give io.popen's close the plain Lua's results, reading and writing", function()
    local pool = new_pool()
    for _, t in ipairs {
      { how = "popen", cmd = "echo out; exit 3" },
      { how = "popen", cmd = "cat >/dev/null; exit 4", mode = "w", write = ("x"):rep(100000) },
      { how = "popen", cmd = "read line; test \"$line\" = in", mode = "w", write = "in\n" },
    } do
      assert.same(start(t), pool:run(t):get())
    end
    local r = pool:run { how = "popen", cmd = "exit 3" }:get()
    assert.same(V52 and { nil, "exit", 3, n = 3, read = "" } or { true, n = 1, read = "" }, r)
  end)

  it("give os.execute the plain Lua's results: exit 0, exit 3, a signal, no command", function()
    local pool = new_pool()
    local want = V52 and { { true, "exit", 0 }, { nil, "exit", 3 }, { nil, "signal", 15 } }
      or { { 0 }, { 3 * 256 }, { 15 } }
    for i, cmd in ipairs { "exit 0", "exit 3", "kill -TERM $$" } do
      local t = { how = "execute", cmd = cmd }
      local r, plain = pool:run(t):get(), start(t)
      want[i].n = #want[i] == 1 and 1 or 3
      assert.same(want[i], plain)
      assert.same(plain, r)
    end
    local shell = pool:run { how = "execute" }:get()
    assert.same(start { how = "execute" }, shell)
    assert.same(V52 and { true, n = 1 } or { 1, n = 1 }, shell)
  end)

  it("end with SIGTERM under os.execute, and the host's Ctrl-C stays the host's", function()
    local pool = new_pool()
    local pidfile = scope.tmpname()
    local ignored = field(host_status(), "SigIgn")
    local task = pool:run { how = "execute", cmd = "echo $$ >" .. pidfile .. "; exec sleep 60" }
    local pid = pid_in(pool, pidfile)
    -- glibc's system() ignores SIGINT and SIGQUIT in the whole process while its
    -- command runs: ours does not (a worker thread blocks them anyway)
    local during = field(host_status(), "SigIgn")
    assert.is_truthy(os.execute("kill -TERM " .. pid))
    assert.same(V52 and { nil, "signal", 15, n = 3 } or { 15, n = 1 }, task:get())
    assert.equal(ignored, during, "the host's ignored signals")
  end)

  it("end with SIGINT under io.popen", function()
    -- unless the host ignores SIGINT (started in the background by a shell
    -- without job control): then so does the command, as the host's own
    local sig = tonumber(field(host_status(), "SigIgn"):sub(-1), 16) % 4 >= 2 and 15 or 2
    local pool = new_pool()
    local pidfile = scope.tmpname()
    local task = pool:run { how = "popen", cmd = "echo $$; exec sleep 60", pidfile = pidfile }
    local pid = pid_in(pool, pidfile)
    assert.is_truthy(os.execute("kill -" .. sig .. " " .. pid))
    assert.same(V52 and { nil, "signal", sig, n = 3, read = "" } or { true, n = 1, read = "" },
                task:get())
  end)

  -- A thread worker's task stopped while it waits for its command ends the
  -- command (SIGTERM, then SIGKILL) and its worker stops as from Lua code: it
  -- is replaced in its slot, not given up on after terminateTimeout (which
  -- the "error" event would report). ("exec": dash passes no SIGTERM on.)
  local function stopped_while_waiting(stop, code, how)
    local pool = new_pool()
    local errors = {}
    pool:on("error", function(e) errors[#errors + 1] = e.code end)
    local pidfile = scope.tmpname()
    local slot = pool:run { how = "id" }:get()[2]
    local task = stop(pool, { how = how, cmd = "echo $$ >" .. pidfile .. "; exec sleep 60" }, pidfile)
    assert.is_true(task:wait(20000), "the task did not settle")
    helpers.assert_error(helpers.rejection(task), code)
    -- the slot is free once the stopped worker's thread has left the task
    assert.equal(slot, pool:run { how = "id" }:get()[2])
    assert.same({}, errors)
    local f = io.open(pidfile)
    local pid = f and tonumber(f:read("*l") or "")
    if f then f:close() end
    if pid then  -- else the task was stopped before it started its command
      assert_gone(pid)
    end
    return pid
  end

  local function cancel(pool, t, pidfile)
    local task = pool:run(t)
    pid_in(pool, pidfile)
    assert.is_true(task:cancel())
    return task
  end

  it_threads("are ended when their task is cancelled in os.execute", function()
    assert.truthy(stopped_while_waiting(cancel, "aborted", "execute"))
  end)

  it_threads("are ended when their task times out in os.execute", function()
    stopped_while_waiting(function(pool, t) return pool:run(t, { timeout = 300 }) end,
                          "timeout", "execute")
  end)

  it_threads("are ended when the pool is destroyed, which then does not give up on the worker", function()
    local pool = new_pool()
    local pidfile = scope.tmpname()
    local task = pool:run { how = "execute", cmd = "echo $$ >" .. pidfile .. "; exec sleep 60" }
    local pid = pid_in(pool, pidfile)
    pool:destroy()  -- raises terminate_timeout had it left the worker behind
    helpers.assert_error(helpers.rejection(task), "terminated")
    assert_gone(pid)
  end)

  it_threads("are ended when their task is cancelled in an io.popen file's close", function()
    if jit then pending("LuaJIT's io.popen is its own: its close waits for the command") return end
    -- "w": the task is in close (which closes our end, then waits) before
    -- the shell has written its pid
    assert.truthy(stopped_while_waiting(function(pool, t, pidfile)
      t.mode = "w"
      return cancel(pool, t, pidfile)
    end, "aborted", "popen"))
  end)
end)
