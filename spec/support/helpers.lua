-- What the specs share: files, the errors of failed calls and tasks, waiting on a
-- pool, and a scope that keeps what a test makes and undoes it in after_each. The
-- tp_block gate is in spec/support/gate.lua, which builds on this module.
--
--   local helpers = require "spec.support.helpers"
--
-- Main side only: it asserts with busted's luassert. Task files in worker states
-- use the plain-Lua part, spec/support/files.lua.
local luapool = require "luapool"
local assert = require "luassert"  -- the `assert` busted gives spec files
local files = require "spec.support.files"

local helpers = {}

local exists, tmpname, touch = files.exists, files.tmpname, files.touch
helpers.exists, helpers.tmpname, helpers.touch, helpers.lines = exists, tmpname, touch, files.lines

-- ---------------------------------------------------------------------------
-- Runtimes

-- The runtime the suite runs under (spec/support/runtime.lua): "threads" or "process".
helpers.RUNTIME = os.getenv("LUAPOOL_TEST_RUNTIME") or ""
if helpers.RUNTIME == "" then helpers.RUNTIME = "threads" end

-- `it` for a spec of what only thread workers do (a stuck thread detached, a worker
-- that shares the host's memory); pending under the process runtime. Pass busted's
-- `it` and `pending`, which spec files have and modules do not.
function helpers.threads_only(it, pending)
  if helpers.RUNTIME == "threads" then return it end
  return function(name) pending(name .. " (threads runtime only)") end
end

-- ---------------------------------------------------------------------------
-- Processes

-- Sends signal number sig to process pid; true when it was sent. By the FFI where
-- there is one (under TSan's preload /bin/sh may not run), else with kill(1).
function helpers.kill(pid, sig)
  if rawget(_G, "jit") then
    local ffi = require "ffi"
    pcall(ffi.cdef, "int kill(int pid, int sig);")
    return ffi.C.kill(pid, sig) == 0
  end
  local r = os.execute("kill -" .. sig .. " " .. pid .. " 2>/dev/null")
  return r == true or r == 0
end

-- ---------------------------------------------------------------------------
-- Errors

-- The message of a luapool error, or any other value as a string.
function helpers.errmsg(e)
  if type(e) == "table" and e.message ~= nil then return tostring(e.message) end
  return tostring(e)
end

-- The luapool error that f(...) raises; fails if it raises none, or something else.
function helpers.raised(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "expected an error, but none was raised")
  assert.is_true(luapool.isError(e), "not a luapool error: " .. tostring(e))
  return e
end

-- The luapool error a task was rejected with; fails if it was fulfilled, or
-- rejected with something else.
function helpers.rejection(task)
  local ok, e = pcall(task.get, task)
  assert.is_false(ok, "expected the task to be rejected, but it was fulfilled")
  assert.is_true(luapool.isError(e), "not a luapool error: " .. tostring(e))
  return e
end

-- e is a luapool error with this code, and this message if one is given.
function helpers.assert_error(e, code, message)
  assert.is_true(luapool.isError(e), "not a luapool error: " .. tostring(e))
  assert.are.equal(code, e.code)
  if message then assert.are.equal(message, e.message) end
end

-- ---------------------------------------------------------------------------
-- Waiting

-- Polls the pool (never sleeping) until cond() holds; fails after 60 s, naming
-- `what` it waited for if given.
function helpers.poll_until(pool, cond, what)
  local deadline = os.time() + 60
  while not cond() do
    pool:poll(10)
    if os.time() > deadline then
      error(what and "timed out waiting for " .. what or "condition not met within 60 s", 2)
    end
  end
end

-- Waits until a tp_block task has created its `started` file, i.e. it is running
-- on a worker (spec/support/gate.lua). task:wait(1) gives the CPU away between
-- looks and notices a task that settled without ever starting. `level` (default 1,
-- the caller) is where error() puts the failure.
function helpers.wait_started(task, path, level)
  level = (level or 1) + 1
  local deadline = os.time() + 60
  while not exists(path) do
    if task:wait(1) then
      local ok, e = pcall(task.get, task)
      error("task settled before it started: " .. (ok and "fulfilled" or helpers.errmsg(e)), level)
    end
    if os.time() > deadline then
      error("no worker started the task within 60 s", level)
    end
  end
end

-- ---------------------------------------------------------------------------
-- Host processes: a Lua script run by the interpreter that runs the specs, with
-- the same environment (paths, sanitizer preloads), from the repo root.

-- False under a ThreadSanitizer preload (/bin/sh, which io.popen starts,
-- crashes with it) and under valgrind (this process's executable is
-- valgrind's tool, which cannot be started as an interpreter).
function helpers.can_host()
  return not (os.getenv("LD_PRELOAD") or ""):find("tsan", 1, true) and
         not helpers.interpreter():find("valgrind", 1, true)
end

local interpreter
function helpers.interpreter()
  if not interpreter then
    local p = assert(io.popen("readlink /proc/$PPID/exe"))  -- $PPID: this process
    interpreter = p:read("*l")
    p:close()
  end
  return interpreter
end

-- Starts `source` as a script with its arguments; returns a handle to read its
-- output (stderr too) line by line. The last line the handle gives is
-- "exit=N", N the script's exit status.
function helpers.host(source, ...)
  local path = tmpname()
  local f = assert(io.open(path, "w"))
  f:write(source)
  f:close()
  local args = { helpers.interpreter(), path, ... }
  for i, a in ipairs(args) do args[i] = "'" .. tostring(a):gsub("'", "'\\''") .. "'" end
  return assert(io.popen(table.concat(args, " ") .. " 2>&1; echo exit=$?; rm -f " .. args[2]))
end

-- Reads what is left of a host's output; returns it and the exit status.
function helpers.host_finish(h)
  local out = h:read("*a")
  h:close()
  return out, tonumber(out:match("exit=(%d+)%s*$"))
end

-- ---------------------------------------------------------------------------
-- spec/support/gate.lua requires this module, so this one loads it only when used.
local function gate()
  return require "spec.support.gate"
end

-- ---------------------------------------------------------------------------
-- A scope: what the tests of a spec make, undone after each of them.
--
--   local scope = helpers.scope()
--   after_each(scope.cleanup)
--   local new_pool, new_file = scope.new_pool, scope.new_file
--
-- cleanup first lets go of whatever may keep a worker busy (it releases the gates,
-- creates the files of new_file, stops the spin loops of spec/fixtures/
-- tp_spin_cell.lua), then destroys the pools, the newest first, then removes the
-- files. Its lists (scope.pools, .gates, .files, .spins) are emptied in place as
-- cleanup starts, so a spec may keep them in locals and add to them itself.
--
-- options.quiet_destroy: destroy each pool in a pcall, for specs whose pools may
-- fail to stop a worker on purpose (terminate_timeout).
function helpers.scope(options)
  local quiet = options and options.quiet_destroy
  local scope = { pools = {}, gates = {}, files = {}, temps = {}, spins = {} }

  -- Keeps a pool made elsewhere (nil is ignored); returns it.
  function scope.track(pool)
    if pool then scope.pools[#scope.pools + 1] = pool end
    return pool
  end

  function scope.new_pool(pool_options)
    return scope.track(luapool.new(pool_options))
  end

  -- A pool of thread workers whatever runtime the suite makes the default
  -- (make test-process): for what shares the host's memory.
  function scope.new_thread_pool(pool_options)
    if pool_options.runtime == nil then pool_options.runtime = "threads" end
    return scope.new_pool(pool_options)
  end

  -- A gate (spec/support/gate.lua), released and removed by cleanup.
  function scope.new_gate(result)
    local g = gate().new(result)
    scope.gates[#scope.gates + 1] = g
    return g
  end

  -- A fresh path whose file cleanup creates before the pools go (it releases a task
  -- that waits for it), and removes after.
  function scope.new_file()
    local path = tmpname()
    scope.files[#scope.files + 1] = path
    return path
  end

  -- A fresh path that cleanup only removes.
  function scope.tmpname()
    local path = tmpname()
    scope.temps[#scope.temps + 1] = path
    return path
  end

  local function take(list)
    local taken = {}
    for i = 1, #list do taken[i], list[i] = list[i], nil end
    return taken
  end

  function scope.cleanup()
    local pools, gates, paths, temps, spins =
      take(scope.pools), take(scope.gates), take(scope.files), take(scope.temps), take(scope.spins)
    for _, g in ipairs(gates) do gate().release(g) end
    for _, path in ipairs(paths) do touch(path) end
    for _, s in ipairs(spins) do s:stop() end
    for i = #pools, 1, -1 do
      if quiet then pcall(pools[i].destroy, pools[i]) else pools[i]:destroy() end
    end
    for _, g in ipairs(gates) do gate().cleanup(g) end
    for _, path in ipairs(paths) do os.remove(path) end
    for _, path in ipairs(temps) do os.remove(path) end
  end

  return scope
end

return helpers
