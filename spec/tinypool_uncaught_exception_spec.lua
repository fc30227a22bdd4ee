-- Ports of Tinypool's test/uncaught-exception-from-handler.test.ts (tinylibs/tinypool
-- 2.1.0) that apply to the luapool core. Each `it` names the Tinypool test it stands for.
--
-- Not ported, because they are about Node only:
--   "uncaught exception in immediate resets Worker" and
--   "uncaught exception in immediate after task yields error event": they throw from
--     setImmediate/setTimeout callbacks, i.e. from Node's event loop after or beside
--     the handler; a luapool worker runs nothing but the handler.
--   "using parentPort is treated as an error": Node's worker_threads parentPort.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local errmsg, rejection, assert_error = helpers.errmsg, helpers.rejection, helpers.assert_error

local EVAL = "spec/fixtures/tp_eval.lua"
local MULTIPLE = "spec/fixtures/tp_multiple.lua"

-- The error of a run that fails, whether run() raises it or the task is rejected.
local function run_error(pool, value, options)
  local ok, task_or_error = pcall(pool.run, pool, value, options)
  if not ok then return task_or_error end
  return rejection(task_or_error)
end

local function ends_with(s, suffix)
  return s:sub(-#suffix) == suffix
end

describe("tinypool uncaught exception", function()
  local pool

  before_each(function()
    pool = nil
  end)

  after_each(function()
    if pool then pool:destroy() end
  end)

  -- "uncaught exception resets Worker"
  it("rejects a task whose handler raises, with task_error and the raised value", function()
    pool = luapool.new { filename = EVAL, minThreads = 1, maxThreads = 1 }
    local e = rejection(pool:run('error("not_caught", 0)'))
    assert_error(e, "task_error")
    assert.are.equal("not_caught", e.value)
    assert.is_truthy(errmsg(e):find("not_caught", 1, true), errmsg(e))
  end)

  -- "uncaught exception resets Worker": the pool goes on serving afterwards
  it("keeps serving tasks after a handler raised", function()
    pool = luapool.new { filename = EVAL, minThreads = 1, maxThreads = 1 }
    for i = 1, 3 do
      assert_error(rejection(pool:run('error("not_caught", 0)')), "task_error")
      assert.are.equal(i, pool:run("return " .. i):get())
    end
    assert.are.equal(6, pool.completed)
  end)

  -- "uncaught exception resets Worker", with a table raised instead of a string
  it("copies a raised table back as the error's value", function()
    pool = luapool.new { filename = EVAL, minThreads = 1, maxThreads = 1 }
    local e = rejection(pool:run('error({ reason = "not_caught", n = 3, list = { 1, 2 } })'))
    assert_error(e, "task_error")
    assert.are.same({ reason = "not_caught", n = 3, list = { 1, 2 } }, e.value)
  end)

  -- "uncaught exception resets Worker": what the error tells about where it happened
  it("gives a task_error the worker's traceback and id; tostring's first line has the code", function()
    pool = luapool.new { filename = EVAL, minThreads = 1, maxThreads = 1 }
    local e = rejection(pool:run('local function inner() error("not_caught") end inner()'))
    assert_error(e, "task_error")
    assert.are.equal("string", type(e.value))
    assert.is_truthy(e.value:find("not_caught", 1, true), e.value)
    assert.are.equal("string", type(e.traceback))
    assert.are.equal(1, e.workerId)
    local s = tostring(e)
    local line = s:match("^[^\n]*")
    assert.is_truthy(line:find("task_error", 1, true), line)
    assert.is_truthy(line:find("not_caught", 1, true), line)
    assert.is_truthy(s:find(e.traceback, #line + 1, true), s)
  end)

  -- luapool.isError tells luapool's errors from other values
  it("isError is true for a task error and false for other values", function()
    pool = luapool.new { filename = EVAL, minThreads = 1, maxThreads = 1 }
    assert.is_true(luapool.isError(rejection(pool:run('error("x", 0)'))))
    assert.is_false(luapool.isError("task_error"))
    assert.is_false(luapool.isError({}))
    assert.is_false(luapool.isError(nil))
  end)

  -- "no named handler found from worker": Tinypool's eval.js exports only a default
  -- function, so a name finds nothing; tp_eval.lua returns a bare function likewise.
  it("names the missing handler and the file when a file has only a default function", function()
    pool = luapool.new { filename = EVAL, minThreads = 1, maxThreads = 1 }
    local e = run_error(pool, "", { name = "someHandler" })
    assert.is_true(luapool.isError(e), "not a luapool error: " .. tostring(e))
    local msg = errmsg(e)
    local prefix = 'No handler function "someHandler" exported from "'
    assert.are.equal(prefix, msg:sub(1, #prefix))
    assert.is_true(ends_with(msg, 'tp_eval.lua"'), msg)
    -- the pool is still usable with the right name
    assert.are.equal(5, pool:run("return 5"):get())
  end)

  -- "no named handler found from worker", for a table of handlers
  it("names the missing handler and the file when a table lacks that name", function()
    pool = luapool.new { filename = MULTIPLE, minThreads = 1, maxThreads = 1 }
    local e = run_error(pool, {}, { name = "someHandler" })
    assert.is_true(luapool.isError(e), "not a luapool error: " .. tostring(e))
    local msg = errmsg(e)
    local prefix = 'No handler function "someHandler" exported from "'
    assert.are.equal(prefix, msg:sub(1, #prefix))
    assert.is_true(ends_with(msg, 'tp_multiple.lua"'), msg)
    assert.are.equal("b", pool:run({}, { name = "b" }):get())
  end)
end)
