-- Ports of Tinypool's test/idle-timeout.test.ts (tinylibs/tinypool 2.2) to luapool.
-- Each `it` names the Tinypool test it stands for.
--
-- Tinypool's tasks wait for each other with Atomics.wait; here tp_block tasks spin
-- until the spec creates a release file (spec/support/gate.lua), so both are sure to
-- run at once on two workers. Tinypool then sleeps 2 s; here the spec waits for the
-- workerDestroy event instead, and checks that it did not come before idleTimeout.
-- Tinypool tells the workers apart by threadId; a luapool workerId is a reused slot
-- number, so the spec counts workerCreate events and the tasks each worker has run.
local helpers = require "spec.support.helpers"
local gate = require "spec.support.gate"
local poll_until = helpers.poll_until

describe("tinypool idle timeout", function()
  local scope = helpers.scope()
  after_each(scope.cleanup)
  local new_pool, new_gate = scope.new_pool, scope.new_gate

  -- Runs two tasks that are sure to be running at once; returns their workerIds.
  local function run_two_at_once(pool)
    local g1, g2 = new_gate(1), new_gate(2)
    g2.release = g1.release  -- one release file lets both go
    local t1, t2 = pool:run(g1), pool:run(g2)
    assert.are.equal(2, #pool.threads)
    gate.wait_started(t1, g1)
    gate.wait_started(t2, g2)
    local released_at = pool.duration
    gate.release(g1)
    local r1, id1 = t1:get()
    local r2, id2 = t2:get()
    assert.are.equal(1, r1)
    assert.are.equal(2, r2)
    assert.are_not.equal(id1, id2)
    return released_at
  end

  -- "idle timeout will let go of threads early"
  it("lets an idle worker above minThreads go after idleTimeout, and starts one when needed", function()
    local idle = 200
    local pool = new_pool { filename = gate.BLOCK, idleTimeout = idle, minThreads = 1, maxThreads = 2 }
    local created, destroyed = 0, {}
    pool:on("workerCreate", function() created = created + 1 end)
    pool:on("workerDestroy", function() destroyed[#destroyed + 1] = pool.duration end)
    assert.are.equal(1, #pool.threads)

    local released_at = run_two_at_once(pool)
    assert.are.equal(2, #pool.threads)

    -- One of the two goes once it has been idle for idleTimeout; never before.
    poll_until(pool, function() return #destroyed >= 1 end, "the idle worker to end")
    assert.are.equal(1, #destroyed)
    assert.is_true(destroyed[1] - released_at >= idle,
      ("a worker ended %g ms after its task, before idleTimeout (%d ms)"):format(
        destroyed[1] - released_at, idle))
    assert.are.equal(1, #pool.threads)
    -- the minThreads one stays, however long it idles: it has run one task
    local kept = pool.threads[1]
    assert.are.equal(1, kept.tasks)

    -- Two tasks at once again: a new worker joins the one that stayed.
    run_two_at_once(pool)
    assert.are.equal(2, #pool.threads)
    poll_until(pool, function() return created >= 3 end, "the third workerCreate")
    assert.are.equal(3, created)
    -- one worker ran a task in each round, the other only the last one
    local tasks = {}
    for i, t in ipairs(pool.threads) do tasks[i] = t.tasks end
    table.sort(tasks)
    assert.are.same({ 1, 2 }, tasks)
  end)

  -- idleTimeout = 0 (the default): a worker above minThreads goes as soon as it is idle
  it("lets a worker above minThreads go at once with the default idleTimeout of 0", function()
    local pool = new_pool { filename = gate.BLOCK, minThreads = 1, maxThreads = 2 }
    assert.are.equal(0, pool.options.idleTimeout)
    local destroyed = 0
    pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
    run_two_at_once(pool)
    poll_until(pool, function() return destroyed >= 1 end, "the idle worker to end")
    assert.are.equal(1, #pool.threads)
    assert.is_true(pool:wait(60000))
    assert.are.equal(1, destroyed)
  end)
end)
