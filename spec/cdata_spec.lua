-- LuaJIT cdata of plain C types cross by value: their bytes and type name.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local raised, rejection = helpers.raised, helpers.rejection

local SHARED = "spec/fixtures/shared.lua"
local jit = rawget(_G, "jit")

local scope = helpers.scope()
after_each(scope.cleanup)
local new = scope.new_pool

if not jit then
  describe("cdata", function()
    it("is LuaJIT's", function() pending("LuaJIT only") end)
  end)
  return
end

local ffi = require "ffi"
dofile(SHARED)  -- declares the spec's C types here too

-- A cdata's bytes: aggregates by their address, numbers through a box.
local function bytes(v)
  local name = tostring(ffi.typeof(v))
  if name:find("struct") or name:find("%[") then
    return ffi.string(ffi.cast("const char *", v), ffi.sizeof(v))
  end
  return ffi.string(ffi.new(ffi.typeof("$[1]", ffi.typeof(v)), v), ffi.sizeof(v))
end

describe("cdata by value", function()
  it("numbers, arrays and structs of numbers cross with their C type", function()
    local pool = new { filename = SHARED, name = "ctype", maxThreads = 1 }
    local shape = ffi.new("struct lp_spec_shape")
    shape.corner[1].y = 2.5
    shape.tag[2] = -7
    shape.bits.f = 1.5
    shape.flags = 5
    local cases = {
      { ffi.new("struct lp_spec_point", 1, 2), "ctype<struct lp_spec_point>" },
      { shape, "ctype<struct lp_spec_shape>" },
      { ffi.new("double[3]", 1, 2, 3), "ctype<double [3]>" },
      { ffi.new("int16_t[?]", 5, 9), "ctype<short [?]>" },
      { ffi.new("int[2][2]", { { 1, 2 }, { 3, 4 } }), "ctype<int [2][2]>" },
      { ffi.new("int64_t", 42), "ctype<int64_t>" },
      { ffi.new("uint8_t", 200), "ctype<unsigned char>" },
    }
    for _, c in ipairs(cases) do
      local ctype, v = pool:run(c[1]):get()
      assert.equal(c[2], ctype)
      assert.equal(tostring(ffi.typeof(c[1])), tostring(ffi.typeof(v)))
      assert.equal(ffi.sizeof(c[1]), ffi.sizeof(v))
      assert.equal(bytes(c[1]), bytes(v))
    end
    local _, v = pool:run(shape):get()
    assert.equal(2.5, v.corner[1].y)
    assert.equal(-7, v.tag[2])
    assert.equal(1.5, v.bits.f)
    assert.equal(5, v.flags)
    _, v = pool:run(ffi.new("int16_t[?]", 5, 9)):get()
    assert.equal(9, v[4])
    _, v = pool:run(ffi.new("int64_t", 42)):get()
    assert.is_true(v == ffi.new("int64_t", 42))
  end)

  it("comes back from a worker in results", function()
    local pool = new { filename = SHARED, maxThreads = 1 }
    local p = pool:run(nil, { name = "make_point" }):get()
    assert.equal("ctype<struct lp_spec_point>", tostring(ffi.typeof(p)))
    assert.equal(3, p.x)
    assert.equal(4, p.y)
  end)

  it("refuses pointers, references and structs holding pointers, by name", function()
    local pool = new { filename = SHARED, name = "echo", maxThreads = 1 }
    local holder = ffi.new("struct lp_spec_holder")
    for _, c in ipairs({
      { ffi.new("int *"), "task.p: a cdata<int *> cannot cross: it is or holds a pointer" },
      { ffi.cast("void *", 0), "cdata<void *> cannot cross" },
      { holder, "cdata<struct lp_spec_holder> cannot cross: it holds a pointer" },
      { ffi.new("struct lp_spec_holder[2]"), "cdata<struct lp_spec_holder [2]> cannot cross" },
      { ffi.cast("int (*)(int)", 0), "cannot cross: it is or holds a pointer" },
      { ffi.new("struct { int a; }"), "its C type has no name to find it by" },
    }) do
      local e = raised(pool.run, pool, { p = c[1] })
      assert.equal("serialize", e.code)
      assert.matches(c[2], e.message, 1, true)
    end
  end)

  it("of a type the other state does not know fails with serialize naming it", function()
    ffi.cdef "struct lp_spec_only_here { int a; };"
    local pool = new { filename = SHARED, name = "echo", maxThreads = 1 }
    local e = rejection(pool:run(ffi.new("struct lp_spec_only_here")))
    assert.equal("serialize", e.code)
    assert.matches("cdata<struct lp_spec_only_here> cannot be made here: its C type is not " ..
                   "declared in this Lua state", e.message, 1, true)
    assert.equal(1, pool:run(1):get())
  end)

  it("crosses to process workers too", function()
    local pool = new { filename = SHARED, name = "ctype", runtime = "process", maxThreads = 1 }
    local ctype, p = pool:run(ffi.new("struct lp_spec_point", 7, 8)):get()
    assert.equal("ctype<struct lp_spec_point>", ctype)
    assert.equal(8, p.y)
  end)

  it("crosses through channels too", function()
    local ch = luapool.channel()
    ch:push(ffi.new("struct lp_spec_point", 5, 6))
    local p = ch:pop()
    assert.equal(6, p.y)
  end)
end)
