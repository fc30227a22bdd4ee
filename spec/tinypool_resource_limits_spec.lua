-- Ports of Tinypool's test/resource-limits.test.ts (tinylibs/tinypool 2.2) to luapool:
-- resourceLimits and maxMemoryLimitBeforeRecycle. Each `it` names the Tinypool test it
-- stands for.
--
-- Tinypool's resourceLimits are V8's (maxOldGenerationSizeMb, ...); luapool's one
-- limit is resourceLimits.maxHeapBytes, the bytes a worker's Lua state may allocate.
-- Tinypool tells a recycled worker by its new threadId; here tp_leak.lua counts the
-- tasks its Lua state has run, which starts again at 1 in a new worker.
--
-- The child_process half of each test: this file under `make test-process`.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local rejection, poll_until = helpers.rejection, helpers.poll_until

local LEAK = "spec/fixtures/tp_leak.lua"
local MiB = 1024 * 1024

describe("tinypool resource limits", function()
  local scope = helpers.scope()
  after_each(scope.cleanup)
  local new_pool = scope.new_pool

  -- "resourceLimits causes task to reject"
  it("rejects a task that allocates past resourceLimits.maxHeapBytes with out_of_memory", function()
    local limit = 4 * MiB
    local pool = new_pool { filename = LEAK, minThreads = 1, maxThreads = 1,
                            resourceLimits = { maxHeapBytes = limit } }
    local destroyed = 0
    pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
    assert.are.same({ maxHeapBytes = limit }, pool.options.resourceLimits)

    local e = rejection(pool:run(nil, { name = "grow" }))
    assert.is_true(luapool.isError(e), "not a luapool error: " .. tostring(e))
    assert.are.equal("out_of_memory", e.code)
    assert.is_truthy(tostring(e):find("out_of_memory", 1, true))

    -- The worker whose state ran out is replaced; the new one serves tasks.
    poll_until(pool, function() return destroyed >= 1 end, "the worker to be replaced")
    assert.are.equal(1, (pool:run(10):get()))
    assert.are.equal(1, #pool.threads)
    -- and the limit holds for it too
    assert.are.equal("out_of_memory", rejection(pool:run(nil, { name = "grow" })).code)
  end)

  -- "resourceLimits causes task to reject", when the handler catches the error: in
  -- Tinypool the worker is ended whatever the task's code does; luapool's contract
  -- says an allocation past the limit fails the task with out_of_memory and the
  -- state is replaced, so a pcall in the handler must not turn it into a success.
  it("fails the task with out_of_memory even when the handler catches the allocation error", function()
    local pool = new_pool { filename = LEAK, minThreads = 1, maxThreads = 1,
                            resourceLimits = { maxHeapBytes = 4 * MiB } }
    local destroyed = 0
    pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
    local task = pool:run(nil, { name = "catch" })
    local ok, e = pcall(task.get, task)
    assert.is_false(ok, "the task was fulfilled although it allocated past maxHeapBytes")
    assert.is_true(luapool.isError(e), "not a luapool error: " .. tostring(e))
    assert.are.equal("out_of_memory", e.code)
    poll_until(pool, function() return destroyed >= 1 end, "the worker to be replaced")
  end)

  -- "resourceLimits causes task to reject": a task that stays below the limit is not
  -- touched by it, however much it allocates over several tasks in total.
  it("lets tasks run that stay below resourceLimits.maxHeapBytes", function()
    local pool = new_pool { filename = LEAK, minThreads = 1, maxThreads = 1,
                            resourceLimits = { maxHeapBytes = 16 * MiB } }
    for round = 1, 5 do
      local calls = pool:run(1000):get()  -- about 1 MiB more each time
      assert.are.equal(round, calls)
    end
  end)

  -- Tinypool's resourceLimits keys are V8's; luapool refuses any but maxHeapBytes.
  it("refuses resourceLimits it does not know, naming them", function()
    local ok, e = pcall(luapool.new, { filename = LEAK, resourceLimits = { maxOldGenerationSizeMb = 4 } })
    assert.is_false(ok)
    assert.is_truthy(tostring(e.message or e):find("maxOldGenerationSizeMb", 1, true), tostring(e))
  end)

  -- "worker is recycled after reaching maxMemoryLimitBeforeRecycle"
  it("recycles a worker whose heap is above maxMemoryLimitBeforeRecycle after a task", function()
    local limit = 10 * 1000 * 1000
    local slack = 64 * 1024  -- the heap the task sees vs. the one measured after it
    local pool = new_pool { filename = LEAK, minThreads = 1, maxThreads = 1,
                            isolateWorkers = false, maxMemoryLimitBeforeRecycle = limit }
    local destroyed = 0
    pool:on("workerDestroy", function() destroyed = destroyed + 1 end)

    -- About 1 MB more per round: the state crosses the limit after about ten rounds.
    local heaps, recycled_after = {}, nil
    for round = 1, 100 do
      local calls, heap = pool:run(1000):get()
      if calls ~= round then  -- a fresh state counts from 1 again
        assert.are.equal(1, calls)
        recycled_after = round - 1
        break
      end
      heaps[round] = heap
      if heap < limit - slack then
        -- pool.threads reports the heap the state had after this task
        assert.are.equal(1, #pool.threads)
        assert.is_true(math.abs(pool.threads[1].heapBytes - heap) < slack,
          ("heapBytes %d, the task saw %d"):format(pool.threads[1].heapBytes, heap))
      end
    end

    assert.is_number(recycled_after, "the worker was never recycled")
    -- Tinypool: "Test setup should not reach max memory on first round"
    assert.is_true(recycled_after > 1, "recycled after the first task")
    -- recycled after the first task that left the heap above the limit, not before
    assert.is_true(heaps[recycled_after] > limit - slack,
      ("recycled with a heap of %d, below the limit"):format(heaps[recycled_after]))
    for round = 1, recycled_after - 1 do
      assert.is_true(heaps[round] < limit + slack,
        ("not recycled after round %d, with a heap of %d"):format(round, heaps[round]))
    end
    poll_until(pool, function() return destroyed >= 1 end, "workerDestroy")
    assert.are.equal(1, destroyed)
  end)

  -- "worker is recycled after reaching maxMemoryLimitBeforeRecycle", the other way
  -- round: without the option, the same tasks all run on one state.
  it("keeps the worker's state without maxMemoryLimitBeforeRecycle", function()
    local pool = new_pool { filename = LEAK, minThreads = 1, maxThreads = 1 }
    for round = 1, 15 do
      assert.are.equal(round, (pool:run(1000):get()))
    end
    assert.is_true(pool.threads[1].heapBytes > 10 * 1000 * 1000)
  end)

  -- "recycled workers should not crash pool (regression)"
  it("keeps working when every task recycles its worker", function()
    local pool = new_pool { filename = LEAK, minThreads = 2, maxThreads = 2,
                            isolateWorkers = false, maxMemoryLimitBeforeRecycle = 10 }
    local destroyed = 0
    pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
    local tasks = {}
    for i = 1, 10 do tasks[i] = pool:run(100) end
    assert.is_true(pool:wait(60000))
    for i = 1, 10 do
      -- every task ran on a fresh state
      assert.are.equal(1, (tasks[i]:get()))
    end
    poll_until(pool, function() return destroyed >= 10 end, "ten workerDestroy events")
    assert.are.equal(10, destroyed)
    assert.are.equal(1, (pool:run(1):get()))
  end)
end)
