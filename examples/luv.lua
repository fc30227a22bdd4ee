-- A pool in a luv (libuv) event loop: the loop wakes when the pool's file
-- descriptor is readable, for results and for timers alike (here a run
-- timeout), and calls pool:poll(). Nothing else drives the pool.
--
--   luajit examples/luv.lua        (Debian: lua-luv)
local uv = require "luv"
local luapool = require "luapool"

local pool = luapool.new { minThreads = 2, maxThreads = 2, handler = function(job)
  if job.spin then while true do io.open("/nonexistent") end end  -- never ends by itself
  return job.n * job.n
end }

local watcher = uv.new_poll(pool:pollfd())
watcher:start("r", function() pool:poll() end)

local left = 4
local function done() left = left - 1 if left == 0 then watcher:stop() watcher:close() end end
for n = 1, 3 do
  pool:run({ n = n }):onDone(function(ok, v) print("square", n, ok, v) done() end)
end
pool:run({ spin = true }, { timeout = 100 }):onDone(function(ok, err)
  print("spinner", ok, err.code)  -- false  timeout, after 100 ms
  done()
end)

uv.run()
pool:destroy()
