-- What a cancel can stop, measured: for each kind of loop, how long a running
-- task takes to stop once cancelled (the worker's replacement, workerDestroy,
-- marks the stop). A loop that takes no interrupt runs on until it ends by
-- itself, about a second after the cancel here.
--
--   make bench-interrupt            (or: luajit bench/interrupt.lua [trials])
--
-- Prints one row per kind: the median and worst stop time, and how many
-- trials stopped within 50 ms (interrupted) rather than at the loop's end.
local luapool = require "luapool"
local now = luapool.now or require("luapool.core").now

local trials = tonumber(arg and arg[1]) or 10
local SECOND = 1000  -- each loop would run about this long (ms) after the cancel

-- Every kind is a function(n) that loops n times; n is calibrated so the loop
-- takes about SECOND ms, and the function reports its start first.
local kinds = {
  { "empty loop", function(n)
      require("luapool").postMessage("started")
      local x = 0
      for i = 1, n do x = x + i end
      return x
    end },
  { "calls a small Lua function", function(n)
      require("luapool").postMessage("started")
      local function inc(v) return v + 1 end
      local x = 0
      for _ = 1, n do x = inc(x) end
      return x
    end },
  { "allocates a table each turn", function(n)
      require("luapool").postMessage("started")
      local last
      for i = 1, n do last = { i } end
      return last[1]
    end },
  { "allocates a table it drops", function(n)
      require("luapool").postMessage("started")
      for i = 1, n do local t = { i } t[1] = i + 1 end  -- luacheck: ignore 241 (LuaJIT sinks this table)
      return n
    end },
  { "concatenates strings", function(n)
      require("luapool").postMessage("started")
      local s = ""
      for i = 1, n do s = (s .. i):sub(-16) end
      return s
    end },
  { "calls a C function (os.time)", function(n)
      require("luapool").postMessage("started")
      local x = 0
      for _ = 1, n do x = x + os.time() end
      return x
    end },
  { "calls io.open (not compiled)", function(n)
      require("luapool").postMessage("started")
      for _ = 1, n do io.open("/nonexistent/luapool") end
      return n
    end },
}

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

local pool = luapool.new { minThreads = 1, maxThreads = 1, terminateTimeout = 30000 }
local started, destroyed = false, 0  -- luacheck: ignore 311
pool:on("message", function() started = true end)
pool:on("workerDestroy", function() destroyed = destroyed + 1 end)

-- n for about SECOND ms of this kind's loop, measured on the pool itself
local function calibrate(fn)
  local n = 1000
  while true do
    local t0 = now()
    pool:run(n, { handler = fn }):get()
    local ms = now() - t0
    if ms > 100 then return math.floor(n * SECOND / ms) end
    n = n * 4
  end
end

local flavour = jit and jit.version or _VERSION
print(("# stop time after task:cancel(), %s, %d trials per kind"):format(flavour, trials))
print(("%-32s %10s %10s %14s"):format("loop", "median ms", "worst ms", "interrupted"))
for _, k in ipairs(kinds) do
  local name, fn = k[1], k[2]
  local n = calibrate(fn) * 2  -- the cancel comes early in a two-second loop
  local times, quick = {}, 0
  for i = 1, trials do
    started = false
    local before = destroyed
    local t = pool:run(n, { handler = fn })
    while not started do pool:poll(1) end
    local t0 = now()
    t:cancel()
    while destroyed == before do pool:poll(1) end
    times[i] = now() - t0
    if times[i] < 50 then quick = quick + 1 end
  end
  local worst = math.max((table.unpack or unpack)(times))
  print(("%-32s %10.2f %10.2f %9d / %d"):format(name, median(times), worst, quick, trials))
end
pool:destroy()
