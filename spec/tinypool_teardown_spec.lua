-- Ports of Tinypool's test/teardown.test.ts (tinylibs/tinypool 2.2) to luapool: the
-- `teardown` option names a function of the task file that runs before a worker's
-- Lua state closes. Each `it` names the Tinypool test it stands for.
--
-- Tinypool's teardown reports through a MessagePort; tp_teardown.lua posts a message
-- and also appends a line to a log file, because messages posted while a pool is
-- destroyed are never delivered, and the file still tells what happened.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local read_lines, poll_until = helpers.lines, helpers.poll_until

local TEARDOWN = "spec/fixtures/tp_teardown.lua"

describe("tinypool teardown", function()
  local scope = helpers.scope { quiet_destroy = true }
  after_each(scope.cleanup)

  -- A pool of tp_teardown.lua with the teardown named, its log file, and the
  -- messages the teardown posts.
  local function new_pool(options)
    local log = scope.tmpname()
    options.filename = TEARDOWN
    options.teardown = "namedTeardown"
    options.workerData = { log = log }
    local pool = scope.new_pool(options)
    local messages = {}
    pool:on("message", function(m) messages[#messages + 1] = m end)
    return pool, log, messages
  end

  -- "isolated workers call teardown on worker recycle"
  it("calls teardown after every task when isolateWorkers is true", function()
    local pool, log, messages = new_pool { minThreads = 1, maxThreads = 1, isolateWorkers = true }
    for i = 1, 5 do
      assert.are.equal("Output of task #1", pool:run({}):get())
      poll_until(pool, function() return #messages >= i end, "the teardown of task " .. i)
      assert.are.equal("Teardown of task #1", messages[i])
    end
    assert.are.equal(5, #messages)
    assert.are.same({ "Teardown of task #1", "Teardown of task #1", "Teardown of task #1",
                      "Teardown of task #1", "Teardown of task #1" }, read_lines(log))
  end)

  -- "non-isolated workers call teardown on worker recycle"
  it("calls teardown only when the pool is destroyed when isolateWorkers is false", function()
    local pool, log, messages = new_pool { minThreads = 1, maxThreads = 1, isolateWorkers = false }
    for i = 1, 5 do
      assert.are.equal("Output of task #" .. i, pool:run({}):get())
    end
    assert.is_true(pool:wait(60000))
    pool:poll()
    assert.are.same({}, messages, "teardown was called before the pool was destroyed")
    assert.are.same({}, read_lines(log))

    pool:destroy()
    assert.are.same({ "Teardown of task #5" }, read_lines(log))
  end)

  -- "non-isolated workers call teardown on worker recycle", on pool:recycleWorkers()
  it("calls teardown on every worker that recycleWorkers replaces", function()
    local pool, log, messages = new_pool { minThreads = 2, maxThreads = 2 }
    local tasks = pool:runAll({})
    for _, t in ipairs(tasks) do assert.are.equal("Output of task #1", t:get()) end
    tasks = pool:runAll({})
    for _, t in ipairs(tasks) do assert.are.equal("Output of task #2", t:get()) end
    assert.are.same({}, read_lines(log))

    pool:recycleWorkers()
    -- both old states were torn down before recycleWorkers returned
    assert.are.same({ "Teardown of task #2", "Teardown of task #2" }, read_lines(log))
    poll_until(pool, function() return #messages >= 2 end, "the teardown messages")
    assert.are.same({ "Teardown of task #2", "Teardown of task #2" }, messages)
    -- the new states have run nothing yet
    tasks = pool:runAll({})
    for _, t in ipairs(tasks) do assert.are.equal("Output of task #1", t:get()) end
  end)

  -- "non-isolated workers call teardown on worker recycle", when an idle worker above
  -- minThreads ends after idleTimeout
  it("calls teardown when an idle worker ends after idleTimeout", function()
    local pool, log = new_pool { minThreads = 0, maxThreads = 1, idleTimeout = 10 }
    local destroyed = 0
    pool:on("workerDestroy", function() destroyed = destroyed + 1 end)
    assert.are.equal("Output of task #1", pool:run({}):get())
    poll_until(pool, function() return destroyed >= 1 end, "the idle worker to end")
    assert.are.same({ "Teardown of task #1" }, read_lines(log))
    assert.are.equal(0, #pool.threads)
  end)

  -- A teardown that raises: reported through the "error" event; the pool carries on.
  it("reports a teardown that raises through the error event", function()
    local pool, log = new_pool { minThreads = 1, maxThreads = 1, isolateWorkers = true }
    local errors = {}
    pool:on("error", function(e) errors[#errors + 1] = e end)
    assert.are.equal("Output of task #1", pool:run({ fail = true }):get())
    poll_until(pool, function() return #errors >= 1 end, "the error event")
    assert.is_true(luapool.isError(errors[1]))
    assert.is_truthy(tostring(errors[1].message):find("teardown failed on purpose", 1, true),
      tostring(errors[1].message))
    assert.are.equal(1, errors[1].workerId)
    assert.are.same({ "Teardown of task #1" }, read_lines(log))
    -- the next task runs on a fresh state all the same
    assert.are.equal("Output of task #1", pool:run({}):get())
  end)
end)
