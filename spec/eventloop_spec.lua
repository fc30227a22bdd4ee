-- Event loops (issue 9): the examples for luv and cqueues run as written
-- (each in a process of its own: busted unloads modules between spec files,
-- and luv loaded twice into one process corrupts libuv's default loop; the
-- in-process luv specs live in spec/pool_spec.lua). examples/luv.lua shows the
-- pollfd waking its loop for a run timeout, with no result to wake it.
local helpers = require "spec.support.helpers"

local scope = helpers.scope({ quiet_destroy = true })
after_each(scope.cleanup)
local new = scope.new_pool

local function spinner(job)
  return job.n
end

describe("pool:pollfd()", function()
  it("stays quiet when no timer is due and nothing finished", function()
    local pool = new { handler = spinner, minThreads = 1, maxThreads = 1 }
    local fd = pool:pollfd()
    assert.equal(1, pool:run({ n = 1 }):get())
    pool:poll()
    -- nothing left: a timer long disarmed, no result: poll(0) settles nothing
    assert.equal(0, pool:poll())
    assert.is_number(fd)
  end)
end)

describe("the event-loop examples", function()
  local function run_example(path, module)
    -- looked up, not required: see above
    local find = package.searchpath
    if not find then pending("Lua 5.1 has no package.searchpath") return end
    if not find(module, package.cpath) and not find(module, package.path) then
      pending(module .. " is not installed for this Lua") return
    end
    if not helpers.can_host() then pending("no child processes under TSan") return end
    local out, status = helpers.host_finish(helpers.host(assert(io.open(path)):read("*a")))
    assert.equal(0, status, out)
    return out
  end

  it("examples/luv.lua settles its squares and times out its spinner", function()
    local out = run_example("examples/luv.lua", "luv")
    if not out then return end
    for n = 1, 3 do assert.truthy(out:find(("square\t%d\ttrue\t%d"):format(n, n * n), 1, true), out) end
    assert.truthy(out:find("spinner\tfalse\ttimeout", 1, true), out)
  end)

  it("examples/cqueues.lua awaits four tasks beside a ticking coroutine", function()
    local out = run_example("examples/cqueues.lua", "cqueues")
    if not out then return end
    for i = 1, 4 do assert.truthy(out:find("coroutine\t" .. i .. "\t", 1, true), out) end
    assert.truthy(out:find("tick\t3", 1, true), out)
  end)
end)
