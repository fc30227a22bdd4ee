-- Task file for examples/progress.lua: sums the digits of the numbers in a
-- range, reporting progress with postMessage every 10% of the way.
local luapool = require "luapool"

return function(job)
  local sum, n = 0, job.to - job.from + 1
  local step = math.max(1, math.floor(n / 10))
  for i = job.from, job.to do
    local x = i
    while x > 0 do sum = sum + x % 10; x = math.floor(x / 10) end
    if (i - job.from + 1) % step == 0 then
      luapool.postMessage({ job = job.name, done = (i - job.from + 1) / n })
    end
  end
  return sum
end
