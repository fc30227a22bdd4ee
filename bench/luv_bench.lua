-- luv side of luapool's benchmarks: libuv's thread pool through uv.new_work/queue.
--
--   luajit bench/luv_bench.lua BENCH [key=value ...]
--
-- BENCH is throughput, latency, cpu, payload, isolate, memory or startup; sizes come as
-- key=value arguments from bench/run.lua. One process makes one measurement of each
-- metric of BENCH and prints one JSON object a line on stdout: {"metric","unit","value"},
-- or {"metric","na": reason} where luv does not fit the workload. The thread pool size
-- is threads=N (default 2): UV_THREADPOOL_SIZE is set here before the first work is
-- queued, which is when libuv reads it.
local dir = arg[0]:match "^(.*)/" or "."
local b = dofile(dir .. "/common.lua")
local now_ms, num = b.now_ms, b.num
local t0 = now_ms() -- before the pool library is loaded (startup)

local threads = num("threads", 2)
b.setenv("UV_THREADPOOL_SIZE", tostring(threads))

local uv = require "luv"
local cjson = require "cjson"

local emit, na = b.emit, b.na

local rss_bytes = b.rss_bytes

local function empty_work(after) return uv.new_work(function() end, after or function() end) end

-- n tasks, at most `limit` in flight: a new one is queued from each completion callback.
local function bounded(n, limit)
  local submitted, done = 0, 0
  local work
  work = empty_work(function()
    done = done + 1
    if submitted < n then submitted = submitted + 1; work:queue() end
  end)
  for _ = 1, math.min(limit, n) do submitted = submitted + 1; work:queue() end
  uv.run()
  assert(done == n, "bounded: lost tasks")
end

-- The work function crosses as bytecode without upvalues: each thread loads the same
-- task file as the luapool side once and keeps it in a global of its own Lua state.
local fib_file = (arg[0]:match "^(.*)/" or ".") .. "/tasks/fib.lua"
local function fib_work(after)
  return uv.new_work(function(n, file)
    local fib = BENCH_FIB
    if not fib then
      fib = dofile(file)
      BENCH_FIB = fib
    end
    return fib(n)
  end, after)
end

local benches = {}

function benches.throughput()
  bounded(num("warm", 2000), 64)
  local n1, limit = num("bounded", 50000), num("inflight", 64)
  local s = now_ms()
  bounded(n1, limit)
  emit("bounded64", "tasks/s", n1 / ((now_ms() - s) / 1000))

  local n2 = num("burst", 200000)
  local done = 0
  local work = empty_work(function() done = done + 1 end)
  s = now_ms()
  for _ = 1, n2 do work:queue() end
  uv.run()
  local ms = now_ms() - s
  assert(done == n2, "burst: lost tasks")
  emit("burst200k", "tasks/s", n2 / (ms / 1000))
end

function benches.latency()
  bounded(num("warm", 2000), 64)
  local work = empty_work()
  for _ = 1, 200 do work:queue(); uv.run() end
  local n = num("n", 20000)
  local us = {}
  for i = 1, n do
    local s = uv.hrtime()
    work:queue()
    uv.run() -- returns once the completion callback has run
    us[i] = (uv.hrtime() - s) / 1e3
  end
  table.sort(us)
  local function pct(p) return us[math.min(n, math.ceil(p / 100 * n))] end
  emit("p50_us", "us", pct(50))
  emit("p99_us", "us", pct(99))
end

-- 64 x fib(27) on this process's pool; prints the time in ms.
local function time_pool(jobs, fibn)
  local done = 0
  local work = fib_work(function(r) done = done + 1; assert(r > 0) end)
  for _ = 1, 4 * threads do work:queue(fibn, fib_file) end -- warm every thread's state
  uv.run()
  done = 0
  local s = now_ms()
  for _ = 1, jobs do work:queue(fibn, fib_file) end
  uv.run()
  assert(done == jobs)
  return now_ms() - s
end

function benches.cpu_pool() -- helper for cpu: run with threads=1 in a child process
  emit("pool_ms", "ms", time_pool(num("jobs", 64), num("fibn", 27)))
end

function benches.cpu()
  local jobs, fibn = num("jobs", 64), num("fibn", 27)
  assert(threads == 2, "cpu: run with threads=2")
  local t2 = time_pool(jobs, fibn)
  -- libuv sizes its pool once per process: the 1-thread figure comes from a child.
  local cmd = string.format("%q %q cpu_pool threads=1 jobs=%d fibn=%d",
    arg[-1] or "luajit", arg[0], jobs, fibn)
  local p = assert(io.popen(cmd))
  local out = p:read "*a"
  p:close()
  local t1 = assert(cjson.decode(out:match "[^\n]+")).value
  local fib = dofile(fib_file)
  local sink = 0
  for _ = 1, 4 do sink = sink + fib(fibn) end
  local s = now_ms()
  for _ = 1, jobs do sink = sink + fib(fibn) end
  local tin = now_ms() - s
  assert(sink > 0)
  emit("speedup_2v1", "x", t1 / t2)
  emit("overhead_1v_inline_pct", "%", (t1 - tin) / tin * 100)
end

function benches.payload()
  na("roundtrip_ms", "luv work passes only plain scalar arguments, no tables")
end

function benches.isolate()
  na("ms_per_task", "luv has no isolateWorkers")
end

function benches.memory()
  local workers = num("workers", 8)
  assert(threads == workers, "memory: run with threads=workers")
  collectgarbage(); collectgarbage()
  b.sleep_ms(100)
  local rss0 = rss_bytes()
  -- one sleeping work per thread, so every thread is up and has its Lua state
  local work = uv.new_work(function(ms) require("luv").sleep(ms) end, function() end)
  for _ = 1, workers do work:queue(num("sleep_ms", 100)) end
  uv.run()
  b.sleep_ms(200) -- idle
  collectgarbage(); collectgarbage()
  emit("mib_per_worker", "MiB", (rss_bytes() - rss0) / workers / 1048576)
end

function benches.startup()
  -- t0 was taken before luv was loaded; bench/run.lua also times the whole process.
  local work = empty_work()
  work:queue()
  uv.run()
  emit("first_result_ms", "ms", now_ms() - t0)
end

b.main("luv", "luv_bench.lua", benches)
