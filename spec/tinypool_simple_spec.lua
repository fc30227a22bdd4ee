-- Ports of Tinypool's test/simple.test.ts (tinylibs/tinypool 2.1.0) that apply to the
-- luapool core. Each `it` names the Tinypool test it stands for.
--
-- Not ported, because they are about Node only:
--   "async eval() handler works"                (promises; a Lua handler returns values)
--   "passing env to workers works"              (process.env)
--   "passing argv to workers works", "passing argv to child process",
--   "passing execArgv to workers works"         (Node's process argv / execArgv)
--   "filename can be a file:// URL", "... to an ESM module"  (Node module loading)
--   "filename can be null when initially provided": in Lua `filename = nil` is the
--     same as leaving it out, which "filename can be provided while posting" covers;
--     its place is taken by "a filename given to run() overrides the pool's".
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local errmsg, touch, wait_started = helpers.errmsg, helpers.touch, helpers.wait_started

local EVAL = "spec/fixtures/tp_eval.lua"
local MULTIPLE = "spec/fixtures/tp_multiple.lua"
local COUNTER = "spec/fixtures/tp_counter.lua"
local ISWORKER = "spec/fixtures/tp_isworker.lua"
local WORKERDATA = "spec/fixtures/tp_workerdata.lua"
local BLOCK = "spec/fixtures/tp_block.lua"

describe("tinypool simple", function()
  local scope = helpers.scope()
  after_each(scope.cleanup)  -- lets any blocked task finish first
  local new_pool, new_file = scope.new_pool, scope.new_file

  -- "basic test"
  it("runs a task file in a worker that sees itself as a worker thread", function()
    local pool = new_pool { filename = ISWORKER, minThreads = 1, maxThreads = 2 }
    local result, worker_at_load, main_in_task = pool:run(nil):get()
    assert.are.equal("done", result)
    assert.is_true(worker_at_load)
    assert.is_false(main_in_task)
  end)

  -- "isWorkerThread correct value"
  it("says isWorkerThread = false on the main side", function()
    assert.is_false(luapool.isWorkerThread)
    assert.is_true(luapool.isMainThread)
    assert.is_nil(luapool.workerId)
  end)

  -- "Tinypool instance is an EventEmitter"
  it("makes a pool without options that has events", function()
    local pool = new_pool()
    assert.are.equal("function", type(pool.on))
    local drains = 0
    pool:on("drain", function() drains = drains + 1 end)
    assert.are.equal(42, pool:run("return 42", { filename = EVAL }):get())
    assert.is_true(pool:wait())
    pool:poll()
    assert.is_true(drains >= 1, "the drain event never fired")
  end)

  -- "Tinypool constructor options are correctly set"
  it("keeps the constructor options in pool.options", function()
    local pool = new_pool { minThreads = 10, maxThreads = 20, maxQueue = 30 }
    assert.are.equal(10, pool.options.minThreads)
    assert.are.equal(20, pool.options.maxThreads)
    assert.are.equal(30, pool.options.maxQueue)
    -- and fills in Tinypool's defaults for the others
    assert.are.equal("default", pool.options.name)
    assert.are.equal(0, pool.options.idleTimeout)
  end)

  -- Tinypool's ThreadPool constructor: maxQueue "auto" is maxThreads ** 2
  it("resolves maxQueue = \"auto\" to maxThreads squared", function()
    local pool = new_pool { minThreads = 1, maxThreads = 3, maxQueue = "auto" }
    assert.are.equal(9, pool.options.maxQueue)
  end)

  -- Tinypool's ThreadPool constructor: only maxThreads given, below the default
  -- minThreads, lowers minThreads to it. (Only bites where the default minThreads is
  -- above 1, i.e. on machines with 4 cores or more.)
  it("lowers the default minThreads when only a smaller maxThreads is given", function()
    local pool = new_pool { maxThreads = 1 }
    assert.are.equal(1, pool.options.maxThreads)
    assert.are.equal(1, pool.options.minThreads)
  end)

  -- Tinypool's ThreadPool constructor: only minThreads given, above the default
  -- maxThreads, raises maxThreads to it.
  it("raises the default maxThreads when only a larger minThreads is given", function()
    local defaults = new_pool { minThreads = 0 }
    local default_max = defaults.options.maxThreads
    defaults:destroy()
    assert.are.equal("number", type(default_max))
    local pool = new_pool { minThreads = default_max + 1 }
    assert.are.equal(default_max + 1, pool.options.minThreads)
    assert.are.equal(default_max + 1, pool.options.maxThreads)
  end)

  -- Tinypool's constructor: 'options.minThreads and options.maxThreads must not conflict'
  it("refuses minThreads > maxThreads, naming both options", function()
    local ok, e = pcall(luapool.new, { minThreads = 3, maxThreads = 2 })
    assert.is_false(ok)
    local msg = errmsg(e)
    assert.is_truthy(msg:find("minThreads", 1, true), msg)
    assert.is_truthy(msg:find("maxThreads", 1, true), msg)
    assert.is_truthy(msg:find("conflict", 1, true), msg)
  end)

  -- "trivial eval() handler works"
  it("returns the handler's result", function()
    local pool = new_pool { filename = EVAL, minThreads = 1, maxThreads = 2 }
    local result = pool:run("return 42"):get()
    assert.are.equal(42, result)
    if math.type then assert.are.equal("integer", math.type(result)) end
  end)

  -- "filename can be provided while posting"
  it("takes the filename from run() when the pool has none", function()
    local pool = new_pool { minThreads = 1, maxThreads = 2 }
    assert.are.equal(42, pool:run("return 42", { filename = EVAL }):get())
  end)

  -- stands for "filename can be null when initially provided" (see the top)
  it("lets a filename given to run() override the pool's", function()
    local pool = new_pool { filename = MULTIPLE, minThreads = 1, maxThreads = 2 }
    assert.are.equal(7, pool:run("return 7", { filename = EVAL }):get())
    assert.are.equal("a", pool:run({}):get())
  end)

  -- "filename must be provided while posting"
  it("refuses a run with no filename anywhere, queuing nothing", function()
    local pool = new_pool { minThreads = 1, maxThreads = 2 }
    local ok, e = pcall(pool.run, pool, "return 1")
    assert.is_false(ok)
    local msg = errmsg(e)
    assert.is_truthy(msg:find("filename must be provided to run() or in options object", 1, true), msg)
    assert.are.equal(0, pool.queueSize)
  end)

  -- "passing valid workerData works"
  it("gives workers a copy of workerData, and the main side none", function()
    local pool = new_pool { filename = WORKERDATA, minThreads = 1, maxThreads = 2, workerData = "ABC" }
    assert.is_nil(luapool.workerData)
    assert.are.equal("ABC", pool:run(nil):get())
  end)

  -- "passing valid workerData works", with a table (a copy crosses)
  it("gives workers a deep copy of a table workerData", function()
    local data = { name = "ABC", list = { 1, 2, 3 }, nested = { deep = { true } } }
    local pool = new_pool { filename = WORKERDATA, minThreads = 1, maxThreads = 2, workerData = data }
    local copy = pool:run(nil):get()
    assert.are.same(data, copy)
    assert.are_not.equal(data, copy)
  end)

  -- "named tasks work" (first of the two)
  it("picks a handler by run's name, \"default\" when none is given", function()
    local pool = new_pool { filename = MULTIPLE, minThreads = 1, maxThreads = 2 }
    assert.are.equal("a", pool:run({}, { name = "a" }):get())
    assert.are.equal("b", pool:run({}, { name = "b" }):get())
    assert.are.equal("a", pool:run({}):get())
  end)

  -- "named tasks work" (second of the two)
  it("uses the pool's name option as the default handler name", function()
    local pool = new_pool { filename = MULTIPLE, name = "b", minThreads = 1, maxThreads = 2 }
    assert.are.equal("a", pool:run({}, { name = "a" }):get())
    assert.are.equal("b", pool:run({}, { name = "b" }):get())
    assert.are.equal("b", pool:run({}):get())
  end)

  -- "isolateWorkers: false"
  it("keeps a worker's Lua state between tasks when isolateWorkers is false", function()
    local pool = new_pool { filename = COUNTER, isolateWorkers = false, minThreads = 1, maxThreads = 1 }
    assert.are.equal(0, pool:run({}):get())
    assert.are.equal(1, pool:run({}):get())
    assert.are.equal(2, pool:run({}):get())
  end)

  -- "workerId should never be more than maxThreads=1", without isolateWorkers
  it("gives workerId 1 to the only worker when maxThreads = 1", function()
    local pool = new_pool { filename = ISWORKER, minThreads = 1, maxThreads = 1 }
    for _ = 1, 5 do
      local _, _, _, id = pool:run({}):get()
      assert.are.equal(1, id)
    end
  end)

  -- "workerId should never be more than maxThreads" and "workerId should never be
  -- duplicated", without isolateWorkers: three tasks that block at once must be on
  -- three different workers, whose ids are distinct and within 1..maxThreads.
  it("gives busy workers distinct ids within 1..maxThreads", function()
    local max = 3
    local pool = new_pool { filename = BLOCK, minThreads = max, maxThreads = max }
    local release = new_file()
    local tasks, started = {}, {}
    for i = 1, max do
      started[i] = new_file()
      tasks[i] = pool:run { started = started[i], release = release, result = i, deadline = os.time() + 30 }
    end
    for i = 1, max do wait_started(tasks[i], started[i]) end
    touch(release)
    local seen = {}
    for i = 1, max do
      local result, id = tasks[i]:get()
      assert.are.equal(i, result)
      assert.are.equal("number", type(id))
      assert.is_true(id >= 1 and id <= max, "workerId out of range: " .. tostring(id))
      assert.is_nil(seen[id], "workerId used twice: " .. tostring(id))
      seen[id] = true
    end
  end)

  -- "isolateWorkers: true"
  it("gives every task a fresh Lua state when isolateWorkers is true", function()
    local pool = new_pool { filename = COUNTER, isolateWorkers = true, minThreads = 1, maxThreads = 1 }
    assert.are.equal(0, pool:run({}):get())
    assert.are.equal(0, pool:run({}):get())
    assert.are.equal(0, pool:run({}):get())
  end)

  -- "workerId should never be more than maxThreads=1"
  it("gives workerId 1 to every isolated task when maxThreads = 1", function()
    local pool = new_pool { filename = ISWORKER, isolateWorkers = true, maxThreads = 1 }
    local tasks = {}
    for i = 1, 5 do tasks[i] = pool:run({}) end
    for i = 1, 5 do
      local _, _, _, id = tasks[i]:get()
      assert.are.equal(1, id)
    end
  end)

  -- "workerId should never be more than maxThreads", for every maxThreads of 1..4
  it("keeps the workerIds of isolated tasks within 1..maxThreads", function()
    for max = 1, 4 do
      local pool = new_pool { filename = ISWORKER, isolateWorkers = true, minThreads = 0, maxThreads = max }
      local tasks = {}
      for i = 1, 8 do tasks[i] = pool:run({}) end
      for i = 1, 8 do
        local _, _, _, id = tasks[i]:get()
        assert.is_true(id >= 1 and id <= max,
          ("workerId %s with maxThreads = %d"):format(tostring(id), max))
      end
      pool:destroy()
    end
  end)

  -- "worker count should never be below minThreads when using isolateWorkers"
  it("keeps minThreads workers while isolated tasks come and go", function()
    local min = 4
    local pool = new_pool { filename = ISWORKER, isolateWorkers = true, minThreads = min }
    assert.are.equal(min, #pool.threads)
    for _ = 1, 6 do
      pool:run({}):get()
      assert.are.equal(min, #pool.threads)
    end
    assert.is_true(pool:wait(60000))
    assert.are.equal(min, #pool.threads)
  end)

  -- "workerId should never be duplicated": tasks that are running at the same time
  -- are on different workers, so their ids differ; done in rounds, with isolated
  -- states, and with more workers than cores. (Tinypool runs cpus + 4 workers and
  -- 20 rounds; 3 rounds of blocked tasks show the same here.)
  it("never gives two isolated tasks that run at once the same workerId", function()
    local max = luapool.cpus() + 4
    local pool = new_pool { filename = BLOCK, isolateWorkers = true, minThreads = 1, maxThreads = max }
    for round = 1, 3 do
      local release = new_file()
      local tasks, started = {}, {}
      for i = 1, max - 2 do
        started[i] = new_file()
        tasks[i] = pool:run { started = started[i], release = release, result = i, deadline = os.time() + 30 }
      end
      for i = 1, max - 2 do wait_started(tasks[i], started[i]) end
      touch(release)
      local seen = {}
      for i = 1, max - 2 do
        local result, id = tasks[i]:get()
        assert.are.equal(i, result)
        assert.is_true(id >= 1 and id <= max, "workerId out of range: " .. tostring(id))
        assert.is_nil(seen[id], ("round %d: workerId %d used twice"):format(round, id))
        seen[id] = true
      end
    end
  end)

  -- "isolateWorkers: true with minThreads of 0 should not halt (#42)"
  it("settles maxThreads + 1 isolated tasks with minThreads = 0 (#42)", function()
    local max = 6
    local pool = new_pool { filename = COUNTER, isolateWorkers = true, minThreads = 0, maxThreads = max }
    local tasks = {}
    for i = 1, max + 1 do tasks[i] = pool:run({}) end
    assert.is_true(pool:wait(60000), "the isolated tasks did not settle within 60 s")
    for i = 1, max + 1 do
      assert.are.equal("fulfilled", tasks[i]:status())
      assert.are.equal(0, tasks[i]:get())
    end
  end)
end)
