-- luapool.buffer: zero-filled memory shared by reference by the host and
-- thread workers.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local raised = helpers.raised

local SHARED = "spec/fixtures/shared.lua"
local jit = rawget(_G, "jit")

local scope = helpers.scope()
after_each(scope.cleanup)
local new = scope.new_thread_pool  -- channels and buffers share the host's memory

describe("luapool.buffer", function()
  it("is zero-filled, with a length; read and write count offsets from 0", function()
    local buf = luapool.buffer(8)
    assert.equal(8, #buf)
    assert.equal(("\0"):rep(8), buf:read())
    buf:write(2, "abc")
    assert.equal("\0\0abc\0\0\0", buf:read(0, 8))
    assert.equal("bc", buf:read(3, 2))
    assert.equal("c\0\0\0", buf:read(4))
    assert.equal("", buf:read(8, 0))
    assert.equal(0, #luapool.buffer(0))
    assert.equal("8", tostring(#buf))  -- an integer on 5.3+
  end)

  it("checks bounds and arguments with invalid_argument", function()
    local buf = luapool.buffer(8)
    local e = raised(buf.read, buf, 6, 3)
    assert.equal("invalid_argument", e.code)
    assert.matches("outside the buffer's 8 bytes", e.message)
    assert.equal("invalid_argument", raised(buf.write, buf, 7, "ab").code)
    assert.equal("invalid_argument", raised(buf.write, buf, 9, "").code)
    assert.equal("invalid_argument", raised(buf.read, buf, -1).code)
    assert.equal("invalid_argument", raised(buf.read, buf, 1.5).code)
    assert.equal("invalid_argument", raised(buf.write, buf, 0, 42).code)
    assert.equal("\0\0\0\0\0\0\0\0", buf:read())  -- nothing was written
    for _, n in ipairs({ -1, 1.5, "8", 0 / 0 }) do
      assert.equal("invalid_argument", raised(luapool.buffer, n).code)
    end
    assert.equal("invalid_argument", raised(luapool.buffer).code)
    assert.equal("invalid_argument", raised(buf.read).code)
  end)

  it("is shared with thread workers: what they write, the host reads", function()
    local pool = new { filename = SHARED, minThreads = 2, maxThreads = 2 }
    local buf = luapool.buffer(8)
    local a = pool:run({ buf = buf, off = 0, s = "left" }, { name = "write" })
    local b = pool:run({ buf = buf, off = 4, s = "rght" }, { name = "write" })
    assert.equal(8, a:get())
    assert.equal(8, b:get())
    assert.equal("leftrght", buf:read())
    assert.equal(buf, pool:run(buf, { name = "echo" }):get())
  end)

  it("lives while only a queued task's value holds it", function()
    local pool = new { filename = SHARED, maxThreads = 1 }
    local t = pool:run({ buf = luapool.buffer(1048576), off = 0, s = "x" }, { name = "write" })
    collectgarbage()
    collectgarbage()
    assert.equal(1048576, t:get())
  end)

  it("gives its address for ffi.cast under LuaJIT", function()
    if not jit then pending("LuaJIT only") return end
    local ffi = require "ffi"
    local buf = luapool.buffer(16)
    local p = ffi.cast("uint8_t *", buf:ptr())
    p[1] = 65
    assert.equal("\0A", buf:read(0, 2))
    local pool = new { filename = SHARED, minThreads = 2, maxThreads = 2 }
    local a = pool:run({ buf = buf, from = 0, to = 8, value = 49 }, { name = "poke" })
    local b = pool:run({ buf = buf, from = 8, to = 16, value = 50 }, { name = "poke" })
    assert.is_true(a:get())
    assert.is_true(b:get())
    assert.equal("1111111122222222", buf:read())
  end)

  it("cannot cross to a process worker", function()
    local pool = new { filename = SHARED, name = "echo", runtime = "process", maxThreads = 1 }
    local e = raised(pool.run, pool, { b = luapool.buffer(4) })
    assert.equal("serialize", e.code)
    assert.matches("task.b: a buffer cannot cross to a process worker", e.message, 1, true)
  end)
end)
