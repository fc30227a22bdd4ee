-- Large results read while they are written (src/stream.h): a thread worker
-- sends a long list it returns in parts, and the main thread decodes each part
-- as it comes. What comes back must be exactly what a result written whole
-- gives: references across parts, cycles, holes, other keys, values after the
-- list, modules by name; a value that cannot cross, found after parts have
-- gone, rejects the task as any other result does. Process workers write
-- their results whole: the same specs hold for them.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"

local FILE = "spec/fixtures/big_lists.lua"
local N = 30000  -- some 700 KiB of result: about ten parts of 64 KiB

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
