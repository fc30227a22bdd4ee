-- Ports of Tinypool's test/task-queue.test.ts (tinylibs/tinypool 2.1.0) that apply to
-- the luapool core. Each `it` names the Tinypool test it stands for.
--
-- Tinypool keeps workers busy with Atomics.wait on a SharedArrayBuffer; here the
-- tp_block task file spins until the test creates a "release" file, and creates a
-- "started" file first, so the test knows for sure which tasks are running and which
-- are still queued (a task a worker has not picked up yet would count as queued).
--
-- Not ported:
--   "tasks can share a Worker if requested (both tests blocking)" and
--   "... (both tests finish)": concurrentTasksPerWorker, which luapool does not have
--     (a Lua state runs one task at a time).
--   "custom task queue works": the taskQueue option and queueOptionsSymbol, which
--     luapool does not have.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local touch, wait_started = helpers.touch, helpers.wait_started
local rejection, assert_error = helpers.rejection, helpers.assert_error

local BLOCK = "spec/fixtures/tp_block.lua"

describe("tinypool task queue", function()
  local pool
  local scope = helpers.scope()
  local new_file = scope.new_file

  -- A tp_block task value; `started` may be nil.
  local function block(release, started, result)
    return { release = release, started = started, result = result, deadline = os.time() + 30 }
  end

  before_each(function()
    pool = nil
  end)

  after_each(function()
    scope.track(pool)
    scope.cleanup()
  end)

  -- "will put items into a task queue until they can run"
  it("queues tasks only once every worker is busy and maxThreads is reached", function()
    pool = luapool.new { filename = BLOCK, minThreads = 2, maxThreads = 3 }
    assert.are.equal(2, #pool.threads)
    assert.are.equal(0, pool.queueSize)

    local release = new_file()
    local tasks = {}
    for i = 1, 3 do
      local started = new_file()
      tasks[i] = pool:run(block(release, started, i))
      wait_started(tasks[i], started)
      assert.are.equal("running", tasks[i]:status())
      -- two workers from the start; the third task needs a third one
      assert.are.equal(i <= 2 and 2 or 3, #pool.threads)
      assert.are.equal(0, pool.queueSize)
    end

    tasks[4] = pool:run(block(release, nil, 4))
    assert.are.equal(3, #pool.threads)
    assert.are.equal(1, pool.queueSize)
    assert.are.equal("pending", tasks[4]:status())

    touch(release)
    for i = 1, 4 do
      assert.are.equal(i, (tasks[i]:get()))
    end
    assert.are.equal(0, pool.queueSize)
    assert.are.equal(4, pool.completed)
  end)

  -- "will reject items over task queue limit"
  it("refuses a task past maxQueue with queue_full, and destroy rejects the rest", function()
    pool = luapool.new { filename = BLOCK, minThreads = 0, maxThreads = 1, maxQueue = 2 }
    assert.are.equal(0, #pool.threads)
    assert.are.equal(0, pool.queueSize)

    local release = new_file()
    local started = new_file()
    local tasks = {}
    tasks[1] = pool:run(block(release, started, 1))
    wait_started(tasks[1], started)
    assert.are.equal(1, #pool.threads)
    assert.are.equal(0, pool.queueSize)

    tasks[2] = pool:run(block(release, nil, 2))
    assert.are.equal(1, #pool.threads)
    assert.are.equal(1, pool.queueSize)

    tasks[3] = pool:run(block(release, nil, 3))
    assert.are.equal(1, #pool.threads)
    assert.are.equal(2, pool.queueSize)

    local ok, e = pcall(pool.run, pool, block(release, nil, 4))
    assert.is_false(ok, "a task past maxQueue was accepted")
    assert_error(e, "queue_full", "Task queue is at limit")
    assert.are.equal(2, pool.queueSize)

    pool:destroy()
    for i = 1, 3 do
      assert_error(rejection(tasks[i]), "terminated", "Terminating worker thread")
    end
  end)

  -- The message Tinypool gives when maxQueue is 0 is its own,
  -- "No task queue available and all Workers are busy"; API.md names only the
  -- queue_full code, so either wording is accepted here.
  local function assert_no_queue_error(e)  -- Tinypool's wording for maxQueue = 0
    assert_error(e, "queue_full", "No task queue available and all Workers are busy")
  end

  -- "will reject items when task queue is unavailable"
  it("with maxQueue = 0 starts a worker for a task but refuses one that would wait", function()
    pool = luapool.new { filename = BLOCK, minThreads = 0, maxThreads = 1, maxQueue = 0 }
    assert.are.equal(0, #pool.threads)
    assert.are.equal(0, pool.queueSize)

    local release = new_file()
    local started = new_file()
    local first = pool:run(block(release, started, 1))
    wait_started(first, started)
    assert.are.equal(1, #pool.threads)
    assert.are.equal(0, pool.queueSize)

    local ok, e = pcall(pool.run, pool, block(release, nil, 2))
    assert.is_false(ok, "a task was queued although maxQueue is 0")
    assert_no_queue_error(e)
    assert.are.equal(0, pool.queueSize)

    pool:destroy()
    assert_error(rejection(first), "terminated", "Terminating worker thread")
  end)

  -- "will reject items when task queue is unavailable (fixed thread count)"
  it("with maxQueue = 0 and one fixed worker refuses a task while it is busy", function()
    pool = luapool.new { filename = BLOCK, minThreads = 1, maxThreads = 1, maxQueue = 0 }
    assert.are.equal(1, #pool.threads)
    assert.are.equal(0, pool.queueSize)

    local release = new_file()
    local started = new_file()
    local first = pool:run(block(release, started, 1))
    wait_started(first, started)
    assert.are.equal(1, #pool.threads)
    assert.are.equal(0, pool.queueSize)

    local ok, e = pcall(pool.run, pool, block(release, nil, 2))
    assert.is_false(ok, "a task was queued although maxQueue is 0")
    assert_no_queue_error(e)

    pool:destroy()
    assert_error(rejection(first), "terminated", "Terminating worker thread")
  end)

  -- "queued tasks can be cancelled"
  it("cancelPendingTasks rejects the queued tasks and lets the running one finish", function()
    pool = luapool.new { filename = BLOCK, minThreads = 0, maxThreads = 1 }
    local count = 10
    local release = new_file()
    local started = new_file()
    local tasks = {}
    tasks[1] = pool:run(block(release, started, 1))
    for i = 2, count do
      tasks[i] = pool:run(block(release, nil, i))
    end
    wait_started(tasks[1], started)
    assert.are.equal(count - 1, pool.queueSize)

    pool:cancelPendingTasks()
    assert.are.equal(0, pool.queueSize)
    assert.are.equal("running", tasks[1]:status())

    local cancelled = 0
    for i = 2, count do
      assert_error(rejection(tasks[i]), "cancelled", "The task has been cancelled")
      cancelled = cancelled + 1
    end
    assert.are.equal("running", tasks[1]:status())

    touch(release)
    assert.are.equal(1, (tasks[1]:get()))
    assert.are.equal(count - 1, cancelled)
    assert.are.equal(count, pool.completed)
  end)
end)
