-- Ports of Tinypool's test/termination.test.ts (tinylibs/tinypool 2.2) to luapool:
-- stopping workers that will not stop, and stopping pools while workers are busy.
-- Each `it` names the Tinypool test it stands for.
--
-- Tinypool fakes a worker whose terminate() never resolves. luapool has the real
-- thing: on LuaJIT a loop that runs compiled takes no interrupt (ANCHORS.md), so the
-- task file tp_spin.lua spins in a trace, and luapool must give up on that worker
-- after terminateTimeout, report it through the "error" event and replace it. On PUC
-- Lua the same loop is interrupted at once, so each spec asserts what the runtime
-- really does (spin.STUCK tells which).
--
-- Not ported as they are: the child_process runtime and Tinypool's `channel` option
-- (runtime = "process" is not built); "writing to terminating worker does not crash"
-- is turned around (the worker keeps posting messages while the pool goes away), and
-- "recycling workers while closing pool does not crash" uses isolated threads.
local helpers = require "spec.support.helpers"
local gate = require "spec.support.gate"
local errmsg, rejection = helpers.errmsg, helpers.rejection
local assert_error, poll_until = helpers.assert_error, helpers.poll_until
local spin = dofile "spec/fixtures/tp_spin_cell.lua"

local EVAL = "spec/fixtures/tp_eval.lua"
local COUNTER = "spec/fixtures/tp_counter.lua"
local CHATTER = "spec/fixtures/tp_chatter.lua"

describe("tinypool termination", function()
  local scope = helpers.scope { quiet_destroy = true }
  after_each(scope.cleanup)
  local new_pool, new_file = scope.new_pool, scope.new_file
  local spins, files = scope.spins, scope.files

  local function new_spin()
    local s = spin.new(3)
    spins[#spins + 1] = s
    return s
  end

  -- Records the pool's error, workerCreate and workerDestroy events.
  local function watch(pool)
    local log = { errors = {}, created = {}, destroyed = {} }
    pool:on("error", function(e) log.errors[#log.errors + 1] = e end)
    pool:on("workerCreate", function(id) log.created[#log.created + 1] = id end)
    pool:on("workerDestroy", function(id) log.destroyed[#log.destroyed + 1] = id end)
    return log
  end

  -- "termination timeout throws when worker does not terminate in time"
  it("gives up on a worker that does not stop within terminateTimeout, and replaces it", function()
    local terminate = 100
    local pool = new_pool { filename = spin.FILE, minThreads = 1, maxThreads = 2,
                            isolateWorkers = true, terminateTimeout = spin.STUCK and terminate or 10000 }
    local log = watch(pool)
    local s = new_spin()
    local task = pool:run(s.value)
    s:wait_spinning(task)
    local worker
    for _, t in ipairs(pool.threads) do
      if t.busy then worker = t.id end
    end
    assert.is_number(worker)

    local cancelled_at = pool.duration
    assert.is_true(task:cancel())
    -- rejected at once, whether or not the worker stops
    assert.are.equal("rejected", task:status())
    assert_error(rejection(task), "aborted", "The task has been aborted")

    poll_until(pool, function() return #log.destroyed >= 1 end, "the worker to be replaced")
    assert.are.same({ worker }, log.destroyed)
    if spin.STUCK then
      assert.are.equal(1, #log.errors)
      local e = log.errors[1]
      assert_error(e, "terminate_timeout")
      assert.is_truthy(tostring(e.message):find("Failed to terminate worker", 1, true), e.message)
      assert.are.equal(worker, e.workerId)
      assert.is_true(pool.duration - cancelled_at >= terminate,
        "the worker was given up on before terminateTimeout passed")
      -- given up on, not waited for: the loop still runs on its detached thread
      assert.is_true(s:still_spinning(), "the compiled loop ended before the worker was replaced")
    else
      assert.are.same({}, log.errors)
    end

    -- The pool carries on with a new worker in that slot.
    assert.are.equal(42, pool:run("return 42", { filename = EVAL }):get())
    assert.is_true(#pool.threads >= 1)
    assert.is_true(#log.created >= 2)
    if spin.STUCK then
      -- The stuck worker was reported once; destroy has nothing left to fail on.
      assert.has_no.errors(function() pool:destroy() end)
      assert.are.equal(1, #log.errors)
    end
  end)

  -- "termination timeout throws when worker does not terminate in time", reached by
  -- the run option timeout rather than a cancel
  it("rejects a spinning task with timeout and replaces its worker", function()
    local pool = new_pool { filename = spin.FILE, minThreads = 1, maxThreads = 1,
                            terminateTimeout = spin.STUCK and 100 or 10000 }
    local log = watch(pool)
    poll_until(pool, function() return #log.created >= 1 end, "the first worker")
    local s = new_spin()
    local task = pool:run(s.value, { timeout = 500 })
    s:wait_spinning(task)

    assert_error(rejection(task), "timeout", "The task has timed out")
    if spin.STUCK then
      assert.is_true(s:still_spinning(), "the task settled only once the compiled loop ended")
    end
    poll_until(pool, function() return #log.destroyed >= 1 end, "the worker to be replaced")
    if spin.STUCK then
      assert.are.equal(1, #log.errors)
      assert_error(log.errors[1], "terminate_timeout")
    else
      assert.are.same({}, log.errors)
    end
    assert.are.equal(7, pool:run("return 7", { filename = EVAL }):get())
  end)

  -- The run option timeout while the main thread sits in pool:poll(ms): timers run
  -- inside poll too, so the task is rejected once its timeout has passed, and poll
  -- returns then, with something settled, not at the end of its 3 s.
  it("rejects a timed-out task while the main thread waits in poll(ms)", function()
    local pool = new_pool { filename = gate.BLOCK, minThreads = 1, maxThreads = 1 }
    local log = watch(pool)
    -- no event must be on its way that would end the poll early
    poll_until(pool, function() return #log.created >= 1 end, "the first worker")
    local g = gate.new("never")
    files[#files + 1] = g.release
    files[#files + 1] = g.started
    local task = pool:run(g, { timeout = 100 })
    local before = pool.duration
    pool:poll(3000)
    local waited = pool.duration - before
    assert.are.equal("rejected", task:status())
    assert.is_true(waited < 2000,
      ("poll(3000) returned after %.0f ms, though the task timed out after 100 ms"):format(waited))
    assert_error(rejection(task), "timeout", "The task has timed out")
  end)

  -- "writing to terminating worker does not crash", turned around: the worker posts
  -- message after message while the pool is destroyed.
  it("destroys a pool whose worker keeps posting messages, without a crash", function()
    local pool = new_pool { filename = CHATTER, minThreads = 1, maxThreads = 1 }
    local messages = 0
    pool:on("message", function(m, id)
      assert.are.equal("Hello from worker", m.text)
      assert.are.equal(1, id)
      messages = messages + 1
    end)
    local task = pool:run { release = new_file(), deadline = os.time() + 30 }
    poll_until(pool, function() return messages >= 3 end, "messages from the worker")

    -- destroy stops the chattering worker in time: it raises no terminate_timeout
    local ok, e = pcall(pool.destroy, pool)
    assert.is_true(ok, "destroy failed: " .. errmsg(e))
    assert_error(rejection(task), "terminated", "Terminating worker thread")
    -- and nothing it posted is delivered once the pool is gone
    local seen = messages
    pool:poll()
    assert.are.equal(seen, messages)
  end)

  -- "recycling workers while closing pool does not crash"
  it("closes an isolated pool while its worker makes fresh states, running every task", function()
    local pool = new_pool { filename = COUNTER, isolateWorkers = true, minThreads = 1, maxThreads = 1 }
    local tasks = {}
    for i = 1, 10 do tasks[i] = pool:run({}) end
    pool:close()
    for i = 1, 10 do
      assert.are.equal("fulfilled", tasks[i]:status())
      assert.are.equal(0, tasks[i]:get())
    end
    assert.are.equal(0, #pool.threads)
    local ok, e = pcall(pool.run, pool, {})
    assert.is_false(ok)
    assert_error(e, "destroyed")
  end)

  -- "recycling workers while closing pool does not crash", with recycleWorkers called
  -- while isolated tasks are queued: the running one ends, the rest run on the new
  -- worker, and the pool is destroyed cleanly afterwards.
  it("recycles an isolated pool with tasks queued, then destroys it cleanly", function()
    local pool = new_pool { filename = COUNTER, isolateWorkers = true, minThreads = 1, maxThreads = 1 }
    local log = watch(pool)
    local tasks = {}
    for i = 1, 10 do tasks[i] = pool:run({}) end
    pool:recycleWorkers()
    assert.are.same({ 1 }, log.destroyed)
    assert.is_true(pool:wait(60000))
    for i = 1, 10 do assert.are.equal(0, tasks[i]:get()) end
    local ok, e = pcall(pool.destroy, pool)
    assert.is_true(ok, "destroy failed: " .. errmsg(e))
    assert.are.equal(0, #pool.threads)
  end)
end)
