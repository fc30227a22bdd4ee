-- Ports of Tinypool's test/isolation.test.ts (tinylibs/tinypool 2.2) to luapool:
-- pool:recycleWorkers() and isolateWorkers = true. Each `it` names the Tinypool test
-- it stands for.
--
-- Tinypool tells a new worker from an old one by its threadId. A luapool workerId is
-- a slot number (1..maxThreads, reused by the next worker of that slot), so these
-- specs tell them apart by what a new worker really has: a fresh Lua state (the
-- tp_counter task file counts 0, 1, 2, ... per state, and starts again at 0), a
-- task count of 0 in pool.threads, and the workerDestroy / workerCreate events.
--
-- The child_process half of each test: this file under `make test-process`.
local helpers = require "spec.support.helpers"
local gate = require "spec.support.gate"
local poll_until = helpers.poll_until

local COUNTER = "spec/fixtures/tp_counter.lua"

local function sorted_ids(pool)
  local ids = {}
  for i, t in ipairs(pool.threads) do ids[i] = t.id end
  table.sort(ids)
  return ids
end

-- What a task run on every live worker returned, in workerId order.
local function run_all(pool)
  local tasks = pool:runAll(nil)
  local out = {}
  for i, t in ipairs(tasks) do out[i] = t:get() end
  return out
end

describe("tinypool isolation", function()
  local scope = helpers.scope()
  after_each(scope.cleanup)
  local new_pool, new_gate = scope.new_pool, scope.new_gate

  -- Records the pool's workerCreate and workerDestroy events.
  local function watch(pool)
    local log = { created = {}, destroyed = {} }
    pool:on("workerCreate", function(id) log.created[#log.created + 1] = id end)
    pool:on("workerDestroy", function(id) log.destroyed[#log.destroyed + 1] = id end)
    return log
  end

  -- "idle workers can be recycled"
  it("replaces every idle worker with a fresh one on recycleWorkers", function()
    local pool = new_pool { filename = COUNTER, minThreads = 4, maxThreads = 4, isolateWorkers = false }
    local log = watch(pool)
    assert.are.equal(4, #pool.threads)
    assert.are.same({ 1, 2, 3, 4 }, sorted_ids(pool))

    -- Without a recycle, each worker keeps its state: 0 on the first run, 1 on the next.
    assert.are.same({ 0, 0, 0, 0 }, run_all(pool))
    assert.are.same({ 1, 1, 1, 1 }, run_all(pool))
    assert.are.same({ 1, 2, 3, 4 }, sorted_ids(pool))
    for _, t in ipairs(pool.threads) do assert.are.equal(2, t.tasks) end
    assert.are.equal(0, #log.destroyed)

    pool:recycleWorkers()

    -- Every old worker is gone by the time recycleWorkers returns...
    table.sort(log.destroyed)
    assert.are.same({ 1, 2, 3, 4 }, log.destroyed)
    -- ...and four new ones stand in their slots, with no task run yet.
    assert.are.equal(4, #pool.threads)
    assert.are.same({ 1, 2, 3, 4 }, sorted_ids(pool))
    for _, t in ipairs(pool.threads) do assert.are.equal(0, t.tasks) end
    -- Fresh states count from 0 again, and keep their state from then on.
    assert.are.same({ 0, 0, 0, 0 }, run_all(pool))
    assert.are.same({ 1, 1, 1, 1 }, run_all(pool))
    assert.are.equal(4, #log.destroyed)
    poll_until(pool, function() return #log.created >= 8 end, "the new workers' workerCreate")
    assert.are.equal(8, #log.created)
  end)

  -- "running workers can recycle after task execution finishes"
  it("recycles idle workers at once and busy ones after their task", function()
    local pool = new_pool { filename = COUNTER, minThreads = 4, maxThreads = 4, isolateWorkers = false }
    local log = watch(pool)
    -- every state counts 1 from now on
    assert.are.same({ 0, 0, 0, 0 }, run_all(pool))

    -- Two workers stay busy until the test releases them.
    local g1, g2 = new_gate("first"), new_gate("second")
    g1.deadline, g2.deadline = os.time() + 20, os.time() + 20
    local b1 = pool:run(g1, { filename = gate.BLOCK })
    local b2 = pool:run(g2, { filename = gate.BLOCK })
    gate.wait_started(b1, g1)
    gate.wait_started(b2, g2)
    local busy = {}
    for _, t in ipairs(pool.threads) do
      if t.busy then busy[t.id] = true end
    end

    -- recycleWorkers blocks until all four are replaced; events fire meanwhile. When
    -- the two idle workers have gone, the busy ones must still be running their
    -- tasks: only then are they let go.
    local at_second
    pool:on("workerDestroy", function()
      if #log.destroyed == 2 then
        at_second = { log.destroyed[1], log.destroyed[2], b1:status(), b2:status() }
        gate.release(g1)
        gate.release(g2)
      end
    end)
    pool:recycleWorkers()

    assert.is_table(at_second, "recycleWorkers returned before two workers were replaced")
    assert.is_nil(busy[at_second[1]], "a busy worker was recycled before its task ended")
    assert.is_nil(busy[at_second[2]], "a busy worker was recycled before its task ended")
    assert.are.equal("running", at_second[3])
    assert.are.equal("running", at_second[4])

    -- The busy workers finished their tasks, then went too.
    assert.are.equal("first", (b1:get()))
    assert.are.equal("second", (b2:get()))
    table.sort(log.destroyed)
    assert.are.same({ 1, 2, 3, 4 }, log.destroyed)
    assert.are.equal(4, #pool.threads)
    assert.are.same({ 0, 0, 0, 0 }, run_all(pool))
  end)

  -- "isolateWorkers: true" (test/simple.test.ts), seen from the worker thread: a fresh
  -- Lua state for every task, on the same thread with the same workerId.
  it("gives every task a fresh state on the same worker when isolateWorkers is true", function()
    local pool = new_pool { filename = COUNTER, minThreads = 1, maxThreads = 1, isolateWorkers = true }
    local log = watch(pool)
    for _ = 1, 5 do assert.are.equal(0, pool:run(nil):get()) end
    assert.are.equal(1, #pool.threads)
    assert.are.equal(1, pool.threads[1].id)
    assert.are.equal(5, pool.threads[1].tasks)  -- one worker thread ran all five
    poll_until(pool, function() return #log.created >= 1 end, "workerCreate")
    assert.are.same({ 1 }, log.created)
    assert.are.same({}, log.destroyed)
  end)

  -- "isolateWorkers: true" with a file given to run() and globals: nothing a task
  -- leaves behind in its state is seen by the next one.
  it("lets no global or loaded file outlive its task when isolateWorkers is true", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1, isolateWorkers = true }
    local eval = { filename = "spec/fixtures/tp_eval.lua" }
    assert.is_nil(pool:run("local before = tp_isolation_global; tp_isolation_global = 1; return before", eval):get())
    assert.is_nil(pool:run("return tp_isolation_global", eval):get())
    assert.are.equal(0, pool:run(nil, { filename = COUNTER }):get())
    assert.are.equal(0, pool:run(nil, { filename = COUNTER }):get())
  end)

  -- "idle workers can be recycled" with isolateWorkers = true: states are fresh for
  -- every task anyway; recycleWorkers still replaces the threads, and the pool works.
  it("recycles isolated workers too", function()
    local pool = new_pool { filename = COUNTER, minThreads = 2, maxThreads = 2, isolateWorkers = true }
    local log = watch(pool)
    assert.are.same({ 0, 0 }, run_all(pool))
    pool:recycleWorkers()
    table.sort(log.destroyed)
    assert.are.same({ 1, 2 }, log.destroyed)
    assert.are.equal(2, #pool.threads)
    for _, t in ipairs(pool.threads) do assert.are.equal(0, t.tasks) end
    assert.are.same({ 0, 0, 0, 0 }, pool:map({ 1, 2, 3, 4 }))
    assert.are.same({ 0, 0 }, run_all(pool))
  end)
end)
