-- Keeping a worker busy until a spec releases it, without sleeping: the task
-- file spec/fixtures/tp_block.lua creates a "started" file, then spins until
-- a "release" file exists.
local helpers = require "spec.support.helpers"

local gate = {}

gate.BLOCK = "spec/fixtures/tp_block.lua"

-- A new gate: the task value for tp_block, and the files it uses.
function gate.new(result)
  return { started = helpers.tmpname(), release = helpers.tmpname(), result = result,
           deadline = os.time() + 60 }
end

function gate.release(g)
  helpers.touch(g.release)
end

function gate.cleanup(g)
  os.remove(g.started)
  os.remove(g.release)
end

-- Waits until the task behind g runs on a worker.
function gate.wait_started(task, g)
  helpers.wait_started(task, g.started, 2)
end

return gate
