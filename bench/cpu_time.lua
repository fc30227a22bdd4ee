-- The cpu bench's overhead_1v_inline_pct by CPU time, for a busy machine, where
-- wall time mostly measures the other jobs. One round, in a fresh process per
-- pool: 64 fib(27) on a 1-thread pool, then the same calls inline, each timed by
-- the threads' own clocks in /proc/self/task/*/schedstat: the worker's CPU time
-- against the main thread's, and wall time less the time each spent runnable but
-- not running. Pools take turns, round after round; medians and quartiles at the
-- end. What the pool spends outside the worker (submitting, settling) is left out.
--   make bench-cputime [CPUTIME_ARGS='rounds=20 pools=luapool,luv jobs=64 fibn=27']
--   (or: luajit bench/cpu_time.lua cpu rounds=20 ...)
local dir = arg[0]:match "^(.*)/" or "."
local b = dofile(dir .. "/common.lua")
local now_ms, num = b.now_ms, b.num
local jobs, fibn = num("jobs", 64), num("fibn", 27)
local fib_file = dir .. "/tasks/fib.lua"

-- {tid = {cpu ns, run-queue wait ns}} of this process's threads.
local pid = io.open("/proc/self/stat"):read("*l"):match "^(%d+)"
local function threads()
  local t, ls = {}, io.popen("ls /proc/" .. pid .. "/task")
  for tid in ls:lines() do
    local f = io.open("/proc/" .. pid .. "/task/" .. tid .. "/schedstat")
    if f then
      local cpu, wait = f:read("*l"):match "^(%d+) (%d+)"
      f:close()
      t[tid] = { tonumber(cpu), tonumber(wait) }
    end
  end
  ls:close()
  return t
end

-- CPU and wait ns of the main thread (main true) or of the others, a to b.
local function spent(a, c, main)
  local cpu, wait = 0, 0
  for tid, v in pairs(c) do
    if (tid == pid) == main then
      local o = a[tid] or { 0, 0 }
      cpu, wait = cpu + v[1] - o[1], wait + v[2] - o[2]
    end
  end
  return cpu, wait
end

-- Each pool: a function that opens a 1-thread pool, warms it up and returns
-- a function running `jobs` fib(fibn) on it to the end.
local pools = {}
function pools.luapool()
  local pool = require("luapool").new { filename = fib_file, minThreads = 1, maxThreads = 1 }
  for _ = 1, 4 do pool:run(fibn):get() end
  return function()
    for _ = 1, jobs do pool:run(fibn) end
    pool:wait()
  end
end
function pools.luv()
  b.setenv("UV_THREADPOOL_SIZE", "1")
  local uv = require "luv"
  local work = uv.new_work(function(n, file)  -- each thread loads the file once
    local fib = package.loaded.bench_fib
    if not fib then
      fib = dofile(file)
      package.loaded.bench_fib = fib
    end
    return fib(n)
  end, function() end)
  local function run(k)
    for _ = 1, k do work:queue(fibn, fib_file) end
    uv.run()
  end
  run(4)
  return function() run(jobs) end
end

local function round(name)
  local run = pools[name]()
  local fib = dofile(fib_file)
  local sink = 0
  for _ = 1, 4 do sink = sink + fib(fibn) end
  local a, s = threads(), now_ms()
  run()
  local wall, c = now_ms() - s, threads()
  local cpu, wait = spent(a, c, false)
  a, s = threads(), now_ms()
  for _ = 1, jobs do sink = sink + fib(fibn) end
  local iwall, ic = now_ms() - s, threads()
  local icpu, iwait = spent(a, ic, true)
  local ran, iran = wall - wait / 1e6, iwall - iwait / 1e6
  print(string.format("%s %.4f %.4f", name, (cpu - icpu) / icpu * 100, (ran - iran) / iran * 100))
end

if b.opt.round then
  round(b.opt.round)
  os.exit(0)
end

local function quartiles(x)
  table.sort(x)
  local function at(p) return x[math.max(1, math.ceil(p * #x))] end
  return at(0.5), at(0.25), at(0.75)
end

local names, got = {}, {}
for name in tostring(b.opt.pools or "luapool,luv"):gmatch "[^,]+" do
  assert(pools[name], "cpu_time: no pool " .. name)
  names[#names + 1], got[name] = name, { cpu = {}, ran = {} }
end
for _ = 1, num("rounds", 20) do
  for _, name in ipairs(names) do
    local p = io.popen(string.format("%q %q %q round=%s jobs=%d fibn=%d 2>&1",
      arg[-1] or "luajit", arg[0], "cpu", name, jobs, fibn))
    local out = p:read "*a"
    p:close()
    local cpu, ran = out:match(name .. " (%S+) (%S+)")
    if cpu then
      table.insert(got[name].cpu, tonumber(cpu))
      table.insert(got[name].ran, tonumber(ran))
    else
      io.stderr:write(name, ": ", out)
    end
  end
end
print(string.format("1-thread pool vs inline, %d x fib(%d), %% more (median, quartiles):", jobs, fibn))
for _, name in ipairs(names) do
  local g = got[name]
  if #g.cpu > 0 then
    local m, lo, hi = quartiles(g.cpu)
    local rm, rlo, rhi = quartiles(g.ran)
    print(string.format("  %-8s cpu time %6.2f (%.2f to %.2f)   wall less run-queue wait %6.2f (%.2f to %.2f)   %d rounds",
      name, m, lo, hi, rm, rlo, rhi, #g.cpu))
  end
end
