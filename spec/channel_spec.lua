-- luapool.channel: a FIFO of copied values shared by the host and thread
-- workers by reference.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local raised, rejection = helpers.raised, helpers.rejection

local SHARED = "spec/fixtures/shared.lua"
local jit = rawget(_G, "jit")

local scope = helpers.scope()
after_each(scope.cleanup)
local new = scope.new_thread_pool  -- channels and buffers share the host's memory

local function pool2()
  return new { filename = SHARED, minThreads = 2, maxThreads = 2 }
end

describe("luapool.channel on the host", function()
  it("is a FIFO of copied values with a count and a capacity", function()
    local ch = luapool.channel()
    assert.equal(math.huge, ch:capacity())
    local t = { 1, { 2 } }
    assert.is_true(ch:push(t))
    t[2][1] = "changed"
    assert.is_true(ch:push("two"))
    assert.is_true(ch:push(false))
    assert.equal(3, #ch)
    assert.equal("3", tostring(#ch))  -- an integer on 5.3+
    assert.same({ 1, { 2 } }, ch:pop())
    assert.equal("two", ch:pop())
    assert.equal(false, ch:pop())
    assert.equal(0, #ch)
    assert.equal("5", tostring(luapool.channel(5):capacity()))
  end)

  it("push waits while full: false and \"timeout\" when the time passes", function()
    local ch = luapool.channel(1)
    assert.is_true(ch:push(1, 0))
    local ok, why = ch:push(2, 0)
    assert.is_false(ok)
    assert.equal("timeout", why)
    ok, why = ch:push(2, 5)
    assert.is_false(ok)
    assert.equal("timeout", why)
    assert.equal(1, #ch)
  end)

  it("pop(0) never blocks, pop(ms) gives nil once the time passes", function()
    local ch = luapool.channel()
    assert.is_nil(ch:pop(0))
    assert.is_nil(ch:pop(5))
    ch:push(7)
    assert.equal(7, ch:pop(0))
  end)

  it("close: what is left can be popped, then nil; pushes give false, \"closed\"", function()
    local ch = luapool.channel()
    ch:push(1)
    assert.is_false(ch:closed())
    ch:close()
    assert.is_true(ch:closed())
    local ok, why = ch:push(2)
    assert.is_false(ok)
    assert.equal("closed", why)
    assert.equal(1, ch:pop())
    assert.is_nil(ch:pop())  -- closed and empty: no wait at all
  end)

  it("refuses nil, bad capacities and timeouts with invalid_argument", function()
    local ch = luapool.channel()
    local e = raised(ch.push, ch, nil)
    assert.equal("invalid_argument", e.code)
    assert.matches("cannot push nil", e.message)
    assert.equal("invalid_argument", raised(ch.push, ch).code)
    for _, cap in ipairs({ 0, -1, 1.5, "x", 0 / 0 }) do
      assert.equal("invalid_argument", raised(luapool.channel, cap).code)
    end
    for _, ms in ipairs({ -1, "1", 0 / 0, {} }) do
      assert.equal("invalid_argument", raised(ch.push, ch, 1, ms).code)
      assert.equal("invalid_argument", raised(ch.pop, ch, ms).code)
    end
    e = raised(ch.pop)
    assert.equal("invalid_argument", e.code)
    assert.matches("call it with a colon", e.message)
  end)

  it("refuses a value that cannot cross with serialize, naming where it is", function()
    local ch = luapool.channel()
    local e = raised(ch.push, ch, { co = coroutine.create(function() end) })
    assert.equal("serialize", e.code)
    assert.matches("value.co: a thread cannot cross", e.message)
    assert.equal(0, #ch)
  end)

  it("pollfd is readable while the channel holds values or is closed", function()
    -- poll(2) through the ffi: luv here would be unloaded with this file by
    -- busted's insulation, and its loop closed under the next spec that uses it
    if not jit then pending("LuaJIT only (ffi)") return end
    local ffi = require "ffi"
    pcall(ffi.cdef, [[
      struct lp_spec_pollfd { int fd; short events, revents; };
      int poll(struct lp_spec_pollfd *fds, unsigned long n, int timeout);
    ]])
    local ch = luapool.channel()
    local fd = ch:pollfd()
    assert.equal(fd, ch:pollfd())
    local function readable()
      local p = ffi.new("struct lp_spec_pollfd", fd, 1, 0)  -- POLLIN
      return ffi.C.poll(p, 1, 0) == 1
    end
    assert.is_false(readable())
    ch:push(1)
    ch:push(2)
    assert.is_true(readable())
    ch:pop()
    assert.is_true(readable())
    ch:pop()
    assert.is_false(readable())
    ch:close()
    assert.is_true(readable())
  end)
end)

describe("a channel crossing to thread workers", function()
  it("arrives as the same object, in task values and results", function()
    local pool = new { filename = SHARED, name = "echo", maxThreads = 1 }
    local ch = luapool.channel()
    local back = pool:run({ ch = ch, again = ch }):get()
    assert.equal(ch, back.ch)
    assert.is_true(rawequal(back.ch, back.again))
    local other = luapool.channel()
    ch:push(other)  -- a channel inside a channel
    assert.is_true(rawequal(other, ch:pop()))
  end)

  it("carries values between workers: producer to consumer", function()
    local pool = pool2()
    local ch = luapool.channel(16)
    local consumer = pool:run({ ch = ch }, { name = "consume" })
    local producer = pool:run({ ch = ch, n = 1000 }, { name = "produce" })
    assert.is_true(producer:get())
    assert.same({ n = 1000, sum = 500500 }, consumer:get())
  end)

  it("crosses in workerData and postMessage", function()
    local ch = luapool.channel()
    local pool = new { filename = SHARED, maxThreads = 1, workerData = { ch = ch } }
    assert.equal("via workerData", pool:run("via workerData", { name = "from_worker_data" }):get())
    local got
    pool:on("message", function(m) got = m.ch end)
    assert.is_true(pool:run(ch, { name = "post" }):get())
    helpers.poll_until(pool, function() return got ~= nil end, "the message")
    assert.equal(ch, got)
  end)

  it("lives while any state holds it: made in a worker whose state is gone", function()
    local pool = new { filename = SHARED, maxThreads = 1, isolateWorkers = true }
    local ch = pool:run(nil, { name = "make_channel" }):get()
    pool:run(nil, { name = "has", handler = nil }):get()  -- the maker's state is closed
    collectgarbage()
    assert.equal(3, ch:capacity())
    assert.equal("made in a worker", ch:pop(0))
  end)

  it("lives while only a queued task's value holds it", function()
    local pool = new { filename = SHARED, maxThreads = 1 }
    local t = pool:run({ ch = (function()
      local c = luapool.channel()
      c:push("kept")
      return c
    end)() }, { name = "pop_one" })
    collectgarbage()
    collectgarbage()
    assert.equal("kept", t:get())
  end)

  it("is in the worker view of thread workers", function()
    local pool = new { filename = SHARED, maxThreads = 1 }
    assert.is_true(pool:run("channel", { name = "has" }):get())
    assert.is_true(pool:run("buffer", { name = "has" }):get())
  end)
end)

describe("channels and buffers under LeakSanitizer", function()
  it("are all freed once nothing holds them", function()
    local preload = os.getenv("LD_PRELOAD") or ""
    if not preload:find("asan", 1, true) then pending("only under make test-asan") return end
    local p = assert(io.popen("ASAN_OPTIONS=detect_leaks=1 '" .. helpers.interpreter() ..
                              "' spec/fixtures/shared_leaks.lua 2>&1; echo exit=$?"))
    local out = p:read("*a")
    p:close()
    assert.matches("done\nexit=0%s*$", out)
  end)
end)

describe("a worker blocked on a channel", function()
  -- Each starts a task that blocks in pop (or push) once it has said so on
  -- `started`, then stops it; a wait that did not see the stop would never end.
  local function blocked(pool, name, opts)
    local started, ch = luapool.channel(), luapool.channel(1)
    opts = opts or {}
    opts.name = name
    local t = pool:run({ started = started, ch = ch }, opts)
    assert.is_true(started:pop())
    return t
  end

  it("in pop is woken by cancel", function()
    local pool = new { filename = SHARED, maxThreads = 1 }
    local t = blocked(pool, "block_pop")
    assert.is_true(t:cancel())
    assert.equal("aborted", rejection(t).code)
    assert.equal(1, pool:run(1, { name = "echo" }):get())
  end)

  it("in push is woken by cancel", function()
    local pool = new { filename = SHARED, maxThreads = 1 }
    local t = blocked(pool, "block_push")
    t:cancel()
    assert.equal("aborted", rejection(t).code)
    assert.equal(1, pool:run(1, { name = "echo" }):get())
  end)

  it("is woken by an AbortController", function()
    local pool = new { filename = SHARED, maxThreads = 1 }
    local ctl = luapool.AbortController()
    local t = blocked(pool, "block_pop", { signal = ctl.signal })
    ctl:abort()
    assert.equal("aborted", rejection(t).code)
  end)

  it("is woken by a timeout", function()
    local pool = new { filename = SHARED, maxThreads = 1 }
    local t = pool:run({ ch = luapool.channel(), started = luapool.channel() },
                       { name = "block_pop", timeout = 30 })
    assert.equal("timeout", rejection(t).code)
    assert.equal(1, pool:run(1, { name = "echo" }):get())
  end)

  it("that catches errors in a loop is still stopped", function()
    local pool = new { filename = SHARED, maxThreads = 1 }
    local t = blocked(pool, "block_pop_pcall")
    t:cancel()
    assert.equal("aborted", rejection(t).code)
  end)

  it("is woken by destroy, well within terminateTimeout", function()
    local pool = luapool.new { filename = SHARED, maxThreads = 1, terminateTimeout = 5000,
                               runtime = "threads" }
    local t = blocked(pool, "block_pop")
    pool:destroy()  -- raises terminate_timeout if the worker had to be left behind
    assert.equal("terminated", rejection(t).code)
  end)
end)

describe("a channel and the process runtime", function()
  it("is refused with serialize: it cannot cross to a process worker", function()
    local pool = new { filename = SHARED, name = "echo", runtime = "process", maxThreads = 1 }
    local ch = luapool.channel()
    local e = raised(pool.run, pool, { ch = ch })
    assert.equal("serialize", e.code)
    assert.matches("task.ch: a channel cannot cross to a process worker", e.message, 1, true)
    e = raised(luapool.new, { filename = SHARED, runtime = "process", workerData = ch })
    assert.equal("serialize", e.code)
    assert.is_false(pool:run("channel", { name = "has" }):get())
  end)

  it("in workerData stops a switch to process workers", function()
    local pool = new { filename = SHARED, maxThreads = 1, workerData = { ch = luapool.channel() } }
    local e = raised(pool.recycleWorkers, pool, { runtime = "process" })
    assert.equal("serialize", e.code)
    assert.equal("threads", pool.options.runtime)
  end)
end)
