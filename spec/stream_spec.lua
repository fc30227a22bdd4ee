-- Large results read while they are written (src/stream.h): a thread worker
-- sends a long list it returns in parts, and the main thread decodes each part
-- as it comes. What comes back must be exactly what a result written whole
-- gives: references across parts, cycles, holes, other keys, values after the
-- list, modules by name; a value that cannot cross, found after parts have
-- gone, rejects the task as any other result does. Process workers write
-- their results whole: the same specs hold for them. The same goes for a
-- long list given to pool:run: a thread worker takes the task with its first
-- part and reads the rest while the main thread writes it.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local it_threads = helpers.threads_only(it, pending)

local FILE = "spec/fixtures/big_lists.lua"
local N = 30000  -- some 700 KiB of result: about ten parts of 64 KiB
local make = dofile(FILE).make

-- records(n), with the references that records() in the fixture adds.
local function records(n)
  local list = make(n)
  list[n].first, list[n].list = list[1], list
  list.name = "records"
  return list
end

describe("large results", function()
  local pool

  before_each(function()
    pool = luapool.new { filename = FILE, minThreads = 1, maxThreads = 1 }
  end)

  after_each(function()
    if pool then pool:destroy() end
  end)

  it("come back whole, with references to tables read long before", function()
    local back = pool:run(N, { name = "records" }):get()
    assert.are.equal(N, #back)
    assert.are.equal("records", back.name)
    for i = 1, N, 997 do
      assert.are.equal(i, back[i].id)
      assert.are.equal("item" .. i, back[i].name)
      assert.are.same({ "a", "b" }, back[i].tags)
    end
    assert.are.equal(back[1], back[N].first)
    assert.are.equal(back, back[N].list)
  end)

  it("keep the values returned after the list", function()
    local t = pool:run(N, { name = "several" })
    local list, s, n = t:get()
    assert.are.equal(N, #list)
    assert.are.equal(N, list[N].id)
    assert.are.equal("after", s)
    assert.are.equal(42, n)
    assert.are.equal(3, select("#", t:get()))
  end)

  it("keep holes and keys of every kind", function()
    local back = pool:run(N, { name = "holes" }):get()
    assert.is_nil(back[2])
    assert.is_nil(back[N - 1])
    assert.are.equal(3, back[3].id)
    assert.are.equal(N, back[N].id)
    assert.are.equal("zero", back[0])
    assert.are.equal("minus", back[-1])
    assert.are.equal("half", back[2.5])
    assert.are.equal("holes", back.name)
    assert.are.equal("past", back[N + 5])
  end)

  it("send a loaded module that holds C functions by name", function()
    local back = pool:run(N, { name = "module" }):get()
    assert.are.equal(string, back[N])
    assert.are.equal(N - 1, back[N - 1].id)
  end)

  it("reject with serialize when a value late in the list cannot cross", function()
    local err = helpers.raised(function()
      return pool:run({ N, N - 10 }, { name = "failing" }):get()
    end)
    assert.are.equal("serialize", err.code)
    assert.matches("result%[" .. (N - 10) .. "%]%.co: a thread cannot cross", err.message)
    -- the worker and the pool go on
    assert.are.equal(N, #pool:run(N, { name = "records" }):get())
    local list, s = pool:run(N, { name = "several" }):get()
    assert.are.equal(N, #list)
    assert.are.equal("after", s)
  end)

  it("of many tasks at once all come back, in any order", function()
    local p2 = luapool.new { filename = FILE, minThreads = 2, maxThreads = 2 }
    local tasks = {}
    for i = 1, 6 do
      tasks[i] = p2:run(i % 2 == 0 and { N, N - i } or N, { name = i % 2 == 0 and "failing" or "records" })
    end
    for i = 1, 6 do
      local ok, v = pcall(tasks[i].get, tasks[i])
      if i % 2 == 0 then
        assert.is_false(ok)
        assert.are.equal("serialize", v.code)
      else
        assert.is_true(ok)
        assert.are.equal(N, #v)
        assert.are.equal(v, v[N].list)
      end
    end
    p2:destroy()
  end)

  it("on their way when the pool is destroyed lose nothing else", function()
    for _ = 1, 5 do
      local p2 = luapool.new { filename = FILE, minThreads = 1, maxThreads = 1 }
      local t = p2:run(N, { name = "records" })
      p2:destroy()
      local ok, v = pcall(t.get, t)
      assert.is_true(ok and #v == N or type(v) == "table" and v.code ~= nil)
    end
    assert.are.equal(N, #pool:run(N, { name = "records" }):get())
  end)
end)

describe("large task values", function()
  local scope = helpers.scope()
  after_each(scope.cleanup)

  local function new_pool(o)
    o.filename = FILE
    return scope.new_pool(o)
  end

  it("reach the worker whole, with references across parts", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1 }
    for _ = 1, 3 do
      local n, first, cycle, name, last = pool:run(records(N), { name = "check" }):get()
      assert.are.same({ N, true, true, "records", "item" .. N }, { n, first, cycle, name, last })
    end
  end)

  it("cross with a function handler too", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1 }
    local t = pool:run(records(N), { handler = function(list) return #list, list[N].list == list end })
    assert.are.same({ N, true }, { t:get() })
  end)

  it("raise serialize at once when a value late in the list cannot cross", function()
    local pool = new_pool { minThreads = 1, maxThreads = 2 }
    for _ = 1, 3 do
      local list = records(N)
      list[N - 10].co = coroutine.create(function() end)
      local err = helpers.raised(pool.run, pool, list, { name = "check" })
      assert.are.equal("serialize", err.code)
      assert.matches("task%[" .. (N - 10) .. "%]%.co: a thread cannot cross", err.message)
      -- the task the worker may have begun to read is gone without a trace
      assert.are.equal(N, (pool:run(records(N), { name = "check" }):get()))
    end
    assert.are.equal(0, pool.queueSize)
  end)

  it_threads("raise queue_full when the first part finds no room", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1, maxQueue = 0, runtime = "threads" }
    local ch = luapool.channel()
    local busy = pool:run(ch, { name = "wait" })
    local err = helpers.raised(pool.run, pool, records(N), { name = "check" })
    assert.are.equal("queue_full", err.code)
    ch:push("done")
    assert.are.equal("done", busy:get())
    assert.are.equal(N, (pool:run(records(N), { name = "check" }):get()))
  end)

  it_threads("queued on threads run on process workers after a switch", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1, runtime = "threads" }
    local ch = luapool.channel()
    local busy = pool:run(ch, { name = "wait" })
    local big = pool:run(records(N), { name = "check" })
    assert.is_false(pool:recycleWorkers { runtime = "process", timeout = 0 })
    ch:push("done")
    assert.are.equal("done", busy:get())
    local n, first, cycle = big:get()
    assert.are.same({ N, true, true }, { n, first, cycle })
    assert.are.equal("process", pool:run(0, { handler = function() return require("luapool").runtime end }):get())
  end)

  it_threads("raise queue_full with a function handler too, and lose nothing", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1, maxQueue = 0, runtime = "threads" }
    local ch = luapool.channel()
    local busy = pool:run(ch, { name = "wait" })
    for _ = 1, 3 do
      local err = helpers.raised(pool.run, pool, records(N), { handler = function(list) return #list end })
      assert.are.equal("queue_full", err.code)
    end
    ch:push("done")
    assert.are.equal("done", busy:get())
    assert.are.equal(N, pool:run(records(N), { handler = function(list) return #list end }):get())
  end)

  it("copy a loaded module of plain Lua, as shorter values do", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1 }
    package.loaded["stream_spec_plain"] = { x = 1 }
    local list = records(N)
    local mod = package.loaded["stream_spec_plain"]
    mod.x = 5
    list[N].mod, list[1].mod = mod, mod
    local ok, x, same = pcall(function()
      return pool:run(list, { handler = function(l) return l[N].mod.x, l[1].mod == l[N].mod end }):get()
    end)
    package.loaded["stream_spec_plain"] = nil
    assert.is_true(ok, type(x) == "table" and x.message or tostring(x))
    assert.are.same({ 5, true }, { x, same })
  end)

  it("send a loaded module that holds C functions by name, after parts have gone", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1 }
    local list = records(N)
    list[N].lib = string
    local t = pool:run(list, { handler = function(l) return l[N].lib == string, l[N].lib.rep("a", 3) end })
    assert.are.same({ true, "aaa" }, { t:get() })
  end)

  it_threads("that name a channel, queued on threads, reject on process workers", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1, runtime = "threads" }
    local ch, held = luapool.channel(), luapool.channel()
    local busy = pool:run(ch, { name = "wait" })
    local tasks = {}
    for i = 1, 4 do
      local list = records(N)
      list[N].ch = held
      tasks[i] = pool:run(list, { name = "check" })
    end
    assert.is_false(pool:recycleWorkers { runtime = "process", timeout = 0 })
    ch:push("done")
    assert.are.equal("done", busy:get())
    for i = 1, 4 do
      local err = helpers.raised(tasks[i].get, tasks[i])
      assert.are.equal("serialize", err.code)
      assert.matches("channel or buffer cannot cross", err.message)
    end
    assert.are.equal(N, (pool:run(records(N), { name = "check" }):get()))
  end)

  it("held in a record of options go in parts too, and come back whole", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1 }
    local list = records(N)
    list[N].lib = string
    local job = { customer = "c1", data = list, more = { 1, 2, 3 }, [1] = "first" }
    local t = pool:run(job, { handler = function(j)
      return { n = #j.data, lib = j.data[N].lib == string, cycle = j.data[N].list == j.data,
               first = j.data[N].first == j.data[1], customer = j.customer, more = j.more,
               one = j[1], items = j.data }
    end })
    local r = t:get()
    assert.are.same({ N, true, true, true, "c1", { 1, 2, 3 }, "first" },
      { r.n, r.lib, r.cycle, r.first, r.customer, r.more, r.one })
    assert.are.equal(N, #r.items)
    assert.are.equal(r.items, r.items[N].list)
    assert.are.equal(r.items[1], r.items[N].first)
    assert.are.equal(string, r.items[N].lib)
  end)

  it("of lists of long lists come back whole", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1 }
    local outer = { records(N), records(300), records(N) }
    outer[3][5].other = outer[1]
    local t = pool:run(outer, { handler = function(o)
      return #o, #o[1], #o[2], #o[3], o[3][5].other == o[1], o
    end })
    local a, b, c, d, same, back = t:get()
    assert.are.same({ 3, N, 300, N, true }, { a, b, c, d, same })
    assert.are.equal(back[1], back[3][5].other)
    assert.are.equal(back[3], back[3][N].list)
  end)

  it_threads("held in a record of options go in parts from run too", function()
    -- a record's long list is read by the worker while run writes it: the task is
    -- taken with its first part, so a value that fails late finds a worker reading
    local pool = new_pool { minThreads = 1, maxThreads = 1, maxQueue = 0, runtime = "threads" }
    local ch = luapool.channel()
    local busy = pool:run(ch, { name = "wait" })
    -- the pool has no room: written whole, this would fail only at the end with
    -- queue_full too; in parts the first part is refused before the bad value
    local list = records(N)
    list[N].co = coroutine.create(function() end)
    local err = helpers.raised(pool.run, pool, { data = list, limit = 10 }, { name = "check" })
    assert.are.equal("queue_full", err.code)
    ch:push("done")
    assert.are.equal("done", busy:get())
  end)

  it("that a record holds past its first fields, or as a key, still come back whole", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1 }
    local list = records(N)
    local wide = {}
    for i = 1, 100 do wide[i] = i end
    wide.data = list
    local keyed = { [list] = true }
    local t = pool:run(0, { handler = function()
      local l = {}
      for i = 1, 3000 do l[i] = { id = i, name = "n" .. i } end
      local w = {}
      for i = 1, 100 do w[i] = i end
      w.data = l
      return w, { [l] = "key" }, l
    end })
    local w, k, l = t:get()
    assert.are.equal(3000, #w.data)
    assert.are.equal(w.data, l)
    assert.are.equal("key", k[l])
    local back = pool:run({ wide, keyed }, { handler = function(v)
      local n = 0
      for key in pairs(v[2]) do n = n + #key end
      return #v[1].data, v[1][100], n, v[1].data[N].list == v[1].data
    end })
    assert.are.same({ N, 100, N, true }, { back:get() })
  end)

  it("held in a record keep a loaded module among its fields by name", function()
    local pool = new_pool { minThreads = 1, maxThreads = 1 }
    local t = pool:run(0, { handler = function()
      local l = {}
      for i = 1, 30000 do l[i] = { id = i, name = "n" .. i } end
      return { data = l, lib = string }
    end })
    local r = t:get()
    assert.are.equal(30000, #r.data)
    assert.are.equal(string, r.lib)
  end)
end)

