-- Event loops (issue 9): the pollfd wakes a loop for timers as well as for
-- results, so a luv loop that only watches it still sees a run timeout; the
-- examples for luv and cqueues run as written.
local helpers = require "spec.support.helpers"

local scope = helpers.scope({ quiet_destroy = true })
after_each(scope.cleanup)
local new = scope.new_pool

local function spinner(job)
  if job.spin then while true do io.open("/nonexistent/luapool") end end
  return job.n
end

describe("pool:pollfd()", function()
  it("becomes readable when a run's timeout is due, with no result to wake it", function()
    local ok, uv = pcall(require, "luv")
    if not ok then pending("luv is not installed for this Lua") return end
    local pool = new { handler = spinner, minThreads = 1, maxThreads = 1 }
    local watcher = uv.new_poll(pool:pollfd())
    local got
    watcher:start("r", function() pool:poll() end)
    pool:run({ spin = true }, { timeout = 50 }):onDone(function(_, err) got = err end)
    local guard = uv.new_timer()  -- a broken pool fails the spec instead of hanging it
    local expired = false
    guard:start(60000, 0, function() expired = true end)
    while not got and not expired do uv.run("once") end
    watcher:stop()
    watcher:close()
    guard:close()
    uv.run()
    assert.is_false(expired, "the loop never woke for the timeout")
    assert.equal("timeout", got.code)
  end)

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
    local ok = pcall(require, module)
    if not ok then pending(module .. " is not installed for this Lua") return end
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
