-- Fixes from the adversarial reliability probe (issue 12): each spec here
-- failed before its fix.
local luapool = require "luapool"
local helpers = require "spec.support.helpers"
local gate = require "spec.support.gate"
local raised = helpers.raised

local scope = helpers.scope({ quiet_destroy = true })
after_each(scope.cleanup)
local new = scope.new_pool

describe("reliability", function()
  describe("terminateTimeout with no limit", function()
    -- destroy used to mark the workers joined without joining them, then free
    -- the pool under them: a use-after-free in most runs of this loop.
    for _, forever in ipairs({ math.huge, 1e12 }) do
      it(("destroy waits for every worker (terminateTimeout = %g)"):format(forever), function()
        for i = 1, 60 do
          local pools = {}
          for k = 1, 3 do
            pools[k] = luapool.new { handler = function(x) return x end, minThreads = 2,
                                     maxThreads = 2, terminateTimeout = forever }
          end
          for k = 1, 3 do assert.equal(i + k, pools[k]:run(i + k):get()) end
          for k = 1, 3 do pools[k]:destroy() end
        end
      end)
    end

    it("destroy interrupts a running task and waits for its worker", function()
      local pool = new { filename = gate.BLOCK, minThreads = 1, maxThreads = 1,
                         terminateTimeout = math.huge }
      local g = scope.new_gate()
      local blocked = pool:run(g)
      gate.wait_started(blocked, g)
      pool:destroy()
      assert.equal("terminated", helpers.rejection(blocked).code)
    end)
  end)

  describe("option ranges", function()
    it("refuses values out of range, naming the option and its range", function()
      local cases = {
        { { maxThreads = math.huge }, "options.maxThreads must be an integer from 1 to 4096" },
        { { minThreads = 2 ^ 31 }, "options.minThreads must be an integer from 0 to 4096" },
        { { maxThreads = 1e8 }, "options.maxThreads must be an integer from 1 to 4096" },
        { { maxQueue = 1e300 }, "options.maxQueue must be an integer from 0 to 9007199254740992" },
        { { resourceLimits = { maxHeapBytes = math.huge } }, "options.resourceLimits.maxHeapBytes" },
        { { resourceLimits = { maxHeapBytes = 10 } }, "from 262144 to" },
        { { maxMemoryLimitBeforeRecycle = math.huge }, "options.maxMemoryLimitBeforeRecycle" },
        { { idleTimeout = 0 / 0 }, "options.idleTimeout must be a non-negative number" },
        { { terminateTimeout = -1 }, "options.terminateTimeout must be a non-negative number" },
        { { runtime = "fibers" }, 'options.runtime must be one of "child_process"' },
      }
      for _, c in ipairs(cases) do
        local err = raised(luapool.new, c[1])
        assert.equal("invalid_option", err.code)
        assert.truthy(err.message:find(c[2], 1, true), err.message)
      end
    end)

    it("accepts the edges of each range and math.huge where it means no limit", function()
      local pool = new { handler = function(x) return x end, minThreads = 0, maxThreads = 1,
                         maxQueue = math.huge, idleTimeout = math.huge,
                         resourceLimits = { maxHeapBytes = 262144 },
                         runtime = "worker_threads" }
      assert.equal(7, pool:run(7):get())
      assert.equal("threads", pool.options.runtime)
    end)
  end)
end)
