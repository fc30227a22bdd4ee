-- Keeping a worker busy until a spec releases it, without sleeping: the task
-- file spec/fixtures/tp_block.lua creates a "started" file, then spins until
-- a "release" file exists.
local gate = {}

gate.BLOCK = "spec/fixtures/tp_block.lua"

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

local function tmpname()
  local path = os.tmpname()
  os.remove(path)
  return path
end

-- A new gate: the task value for tp_block, and the files it uses.
function gate.new(result)
  return { started = tmpname(), release = tmpname(), result = result,
           deadline = os.time() + 60 }
end

function gate.release(g)
  local f = assert(io.open(g.release, "w"))
  f:close()
end

function gate.cleanup(g)
  os.remove(g.started)
  os.remove(g.release)
end

-- Waits until the task behind g runs on a worker.
function gate.wait_started(task, g)
  local deadline = os.time() + 60
  while not exists(g.started) do
    if task:wait(1) then error("task settled before it started", 2) end
    if os.time() > deadline then error("no worker started the task within 60 s", 2) end
  end
end

return gate
