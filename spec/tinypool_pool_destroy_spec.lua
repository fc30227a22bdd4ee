-- Ports of Tinypool's test/pool-destroy.test.ts (tinylibs/tinypool 2.1.0) that apply
-- to the luapool core. Each `it` names the Tinypool test it stands for.
--
-- Tinypool destroys the pool while a task runs `while(1){}`. A loop like that, once
-- LuaJIT compiles it, cannot be interrupted (see ANCHORS.md), so most running tasks
-- here are tp_block, which leaves the trace on every turn; the compiled-loop case
-- itself runs tp_spin.lua, and destroy must then give up on the worker after
-- terminateTimeout rather than hang.
--
-- "cleans up async resources" checks Node's async_hooks; its place is taken by what
-- destroy must release in luapool: the workers, further runs, and <close>.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local it_threads = helpers.threads_only(it, pending)
local errmsg, rejection, assert_error = helpers.errmsg, helpers.rejection, helpers.assert_error
local wait_started = helpers.wait_started

local EVAL = "spec/fixtures/tp_eval.lua"
local BLOCK = "spec/fixtures/tp_block.lua"
local spin = dofile "spec/fixtures/tp_spin_cell.lua"

describe("tinypool pool destroy", function()
  local scope = helpers.scope { quiet_destroy = true }
  after_each(scope.cleanup)
  local new_pool, new_file = scope.new_pool, scope.new_file
  local pools, spins = scope.pools, scope.spins

  local function block(release, started)
    return { release = release, started = started, result = "released", deadline = os.time() + 30 }
  end

  -- "can destroy pool while tasks are running"
  it("rejects a running task with terminated when the pool is destroyed", function()
    local pool = new_pool { filename = BLOCK, minThreads = 1, maxThreads = 2 }
    local release, started = new_file(), new_file()
    local task = pool:run(block(release, started))
    wait_started(task, started)
    assert.are.equal("running", task:status())

    pool:destroy()
    assert_error(rejection(task), "terminated", "Terminating worker thread")
    assert.are.equal("rejected", task:status())
  end)

  -- "can destroy pool while tasks are running" and "destroy after initializing should
  -- work (#43)" without isolateWorkers: destroy straight after run, whether the tasks
  -- have reached a worker yet or not; every one of them is rejected.
  it("rejects running and queued tasks alike when destroyed straight after run", function()
    local pool = new_pool { filename = BLOCK, minThreads = 1, maxThreads = 1 }
    local release = new_file()
    local tasks = {}
    for i = 1, 3 do tasks[i] = pool:run(block(release)) end
    pool:destroy()
    for i = 1, 3 do
      assert_error(rejection(tasks[i]), "terminated", "Terminating worker thread")
    end
    assert.are.equal(0, pool.queueSize)
  end)

  -- stands for "cleans up async resources"
  it("stops every worker, is idempotent, and makes later runs raise destroyed", function()
    local pool = new_pool { filename = EVAL, minThreads = 2, maxThreads = 2 }
    assert.are.equal(2, #pool.threads)
    assert.are.equal(42, pool:run("return 42"):get())

    pool:destroy()
    assert.are.equal(0, #pool.threads)
    assert.has_no.errors(function() pool:destroy() end)

    local ok, e = pcall(pool.run, pool, "return 1")
    assert.is_false(ok, "a destroyed pool accepted a task")
    assert_error(e, "destroyed")
    assert.are.equal(0, pool.queueSize)
  end)

  -- stands for "cleans up async resources": to-be-closed pools (Lua 5.4)
  if _VERSION == "Lua 5.4" then
    it("destroys a pool held in a <close> variable when its block ends", function()
      local chunk = assert(load([[
        local luapool, filename = ...
        local escaped, result
        do
          local pool <close> = luapool.new { filename = filename, minThreads = 1, maxThreads = 1 }
          escaped = pool
          result = pool:run("return 42"):get()
        end
        return escaped, result
      ]], "=close_chunk"))
      local pool, result = chunk(luapool, EVAL)
      pools[#pools + 1] = pool
      assert.are.equal(42, result)
      assert.are.equal(0, #pool.threads)
      local ok, e = pcall(pool.run, pool, "return 1")
      assert.is_false(ok, "a closed pool accepted a task")
      assert_error(e, "destroyed")
    end)
  else
    pending("a pool in a <close> variable is destroyed when its block ends (Lua 5.4 only)")
  end

  -- "destroy after initializing should work (#43)"
  it("rejects an isolated task with terminated when destroyed straight after run (#43)", function()
    local pool = new_pool { filename = BLOCK, isolateWorkers = true }
    local task = pool:run(block(new_file()))
    pool:destroy()
    assert_error(rejection(task), "terminated", "Terminating worker thread")
    assert.are.equal(0, #pool.threads)
  end)

  -- "destroy after initializing should work (#43)", once the isolated worker has run
  -- a task and is busy making the next task's fresh state
  it("destroys an isolated pool between tasks without waiting or failing (#43)", function()
    local pool = new_pool { filename = EVAL, isolateWorkers = true, minThreads = 1, maxThreads = 1 }
    for _ = 1, 3 do assert.are.equal(42, pool:run("return 42"):get()) end
    local task = pool:run("return 42")
    pool:destroy()
    assert.are.equal(0, #pool.threads)
    -- settled by destroy, one way or the other, without a wait
    local status = task:status()
    assert.is_true(status == "fulfilled" or status == "rejected", status)
    local ok, e = pcall(task.get, task)
    if ok then
      assert.are.equal(42, e)
    else
      assert_error(e, "terminated", "Terminating worker thread")
    end
  end)

  -- "can destroy pool while tasks are running", with Tinypool's `while(1){}` as it is:
  -- on LuaJIT the loop runs compiled and takes no interrupt (tp_spin.lua), so destroy
  -- gives up on the worker after terminateTimeout and raises terminate_timeout, but
  -- never hangs; on PUC Lua the hook stops the loop and destroy returns quietly.
  -- the spin loop shares the host's memory (tp_spin.lua); process_spec.lua has
  -- the process runtime's compiled loop
  it_threads("never hangs when destroyed while a task spins in a loop (terminateTimeout)", function()
    local s = spin.new(3)
    spins[#spins + 1] = s
    local pool = new_pool { filename = spin.FILE, minThreads = 1, maxThreads = 1, terminateTimeout = 50 }
    local task = pool:run(s.value)
    s:wait_spinning(task)

    local ok, e = pcall(pool.destroy, pool)
    if spin.STUCK then
      assert.is_false(ok, "destroy did not report the worker it could not stop")
      assert_error(e, "terminate_timeout")
      assert.is_truthy(tostring(e.message):find("Failed to terminate worker", 1, true), e.message)
      -- destroy returned while the loop still ran: it did not wait for it
      assert.is_true(s:still_spinning(), "the compiled loop ended before destroy returned")
    else
      assert.is_true(ok, "destroy raised: " .. errmsg(e))
    end
    assert_error(rejection(task), "terminated", "Terminating worker thread")
    assert.are.equal(0, #pool.threads)
    -- still idempotent, and raises nothing more
    assert.has_no.errors(function() pool:destroy() end)
  end)
end)
