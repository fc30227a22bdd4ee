-- Progress, timeouts and cancelling, on one pool:
--   luajit examples/progress.lua
-- Three jobs report progress through postMessage (the pool's "message"
-- event); a fourth never ends by itself and has a timeout; a fifth is
-- cancelled by an AbortController while it waits in the queue.
local luapool = require "luapool"

local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local pool = luapool.new { filename = dir .. "/crawl_task.lua", minThreads = 2, maxThreads = 2 }

local last = {}
pool:on("message", function(m, workerId)
  local pct = math.floor(m.done * 100 + 0.5)
  if pct ~= last[m.job] then
    last[m.job] = pct
    io.write(("  %-5s %3d%%  (worker %d)\n"):format(m.job, pct, workerId))
  end
end)

local ctl = luapool.AbortController()
local jobs = {
  pool:run({ name = "a", from = 1, to = 3e6 }),
  pool:run({ name = "b", from = 1, to = 2e6 }),
  pool:run({ name = "c", from = 1, to = 1e6 }),
  pool:run(nil, { timeout = 200, handler = function()
    local t = {}
    while true do t[#t % 64 + 1] = {} end  -- allocates: an interrupt stops it
  end }),
  pool:run({ name = "maybe", from = 1, to = 1e6 }, { signal = ctl.signal }),
}
ctl:abort()  -- "maybe" is still queued: it never runs

for i, task in ipairs(jobs) do
  task:onDone(function(ok, v)
    if ok then print(("job %d: sum of digits %d"):format(i, v))
    else print(("job %d: %s"):format(i, tostring(v))) end
  end)
end
pool:wait()
pool:destroy()
