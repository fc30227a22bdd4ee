-- Tasks awaited from cqueues coroutines: task:await() yields the coroutine
-- through cqueues.poll(pool) until the task settles, so the controller can
-- run other coroutines meanwhile.
--
--   luajit examples/cqueues.lua    (Debian: lua-cqueues)
local cqueues = require "cqueues"
local luapool = require "luapool"

local pool = luapool.new { minThreads = 2, maxThreads = 2, handler = function(n)
  local x = 0
  for i = 1, n do x = x + i % 7 end
  return x
end }

local cq = cqueues.new()
for i = 1, 4 do
  cq:wrap(function()
    local v = pool:run(i * 1e6):await()
    print("coroutine", i, v)
  end)
end
cq:wrap(function()
  for tick = 1, 3 do print("tick", tick) cqueues.sleep(0.001) end
end)
assert(cq:loop())
pool:destroy()
