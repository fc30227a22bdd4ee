-- luapool side of luapool's benchmarks.
--
--   luajit bench/luapool_bench.lua BENCH [key=value ...]
--
-- BENCH is throughput, latency, cpu, payload, isolate, memory or startup (or contend:
-- a load for run.lua's contended bench); sizes come as key=value arguments from
-- bench/run.lua. One process makes one measurement of each
-- metric of BENCH and prints one JSON object a line on stdout: {"metric","unit","value"},
-- or {"metric","na": reason} when luapool cannot do it (yet). `require "luapool"` must
-- work: run with the LUA_PATH/LUA_CPATH of the Makefile's LUAPOOL_ENV.
local dir = arg[0]:match "^(.*)/" or "."
local b = dofile(dir .. "/common.lua")
local now_ms, num = b.now_ms, b.num
local t0 = now_ms() -- before the pool library is loaded (startup)

local function task(name) return dir .. "/tasks/" .. name .. ".lua" end

local luapool = require "luapool"

local emit, na = b.emit, b.na

local tree_rss_bytes = b.tree_rss_bytes

local sleep_ms = b.sleep_ms

-- runtime=process: the same workloads on process workers (the luapool-process rows)
local function new_pool(file, threads, extra)
  local o = { filename = task(file), minThreads = threads, maxThreads = threads,
              runtime = b.opt.runtime }
  for k, v in pairs(extra or {}) do o[k] = v end
  local pool = luapool.new(o)
  assert(pool.options.runtime == (b.opt.runtime or "threads"),
    "the pool runs on " .. tostring(pool.options.runtime) .. ", not runtime=" .. tostring(b.opt.runtime))
  return pool
end

local function settled(t)
  local s = t:status()
  return s == "fulfilled" or s == "rejected"
end

-- n empty tasks, at most `limit` in flight: completions are counted by onDone callbacks
-- (fired by poll); when poll has nothing, block on the oldest task still in flight.
local function bounded(pool, n, limit)
  local submitted, done, oldest = 0, 0, 1
  local ring = {}
  local failure
  local function cb(ok, err)
    done = done + 1
    if not ok and not failure then failure = err end
  end
  while done < n do
    while submitted - done < limit and submitted < n do
      submitted = submitted + 1
      local t = pool:run(0)
      t:onDone(cb)
      ring[submitted] = t
    end
    if pool:poll() == 0 and done < n then
      while oldest < submitted and settled(ring[oldest]) do
        ring[oldest] = nil
        oldest = oldest + 1
      end
      ring[oldest]:wait()
    end
  end
  if failure then error(failure, 0) end
end

local benches = {}

function benches.throughput()
  local pool = new_pool("empty", 2)
  bounded(pool, num("warm", 2000), 64)
  local n1, limit = num("bounded", 50000), num("inflight", 64)
  local s = now_ms()
  bounded(pool, n1, limit)
  emit("bounded64", "tasks/s", n1 / ((now_ms() - s) / 1000))

  local n2 = num("burst", 200000)
  local tasks = {}
  s = now_ms()
  for i = 1, n2 do tasks[i] = pool:run(0) end
  pool:wait()
  local ms = now_ms() - s
  for i = 1, n2 do assert(tasks[i]:status() == "fulfilled", "burst: a task did not fulfil") end
  emit("burst200k", "tasks/s", n2 / (ms / 1000))
  pool:destroy()
end

-- A load, not a measurement (bench/run.lua's contended bench): throughput's bounded64
-- workload on a pool of 2, over and over until the guard says stop (seconds=S, parent=PID).
function benches.contend()
  local alive = b.load_guard()
  local pool = new_pool("empty", 2)
  bounded(pool, num("warm", 2000), 64)
  io.stdout:write "ready\n"
  repeat bounded(pool, 2000, 64) until not alive()
  pool:destroy()
end

function benches.latency()
  local pool = new_pool("empty", 2)
  bounded(pool, num("warm", 2000), 64)
  for _ = 1, 200 do pool:run(0):get() end
  local n = num("n", 20000)
  local us = {}
  for i = 1, n do
    local s = now_ms()
    pool:run(0):get()
    us[i] = (now_ms() - s) * 1e3
  end
  table.sort(us)
  local function pct(p) return us[math.min(n, math.ceil(p / 100 * n))] end
  emit("p50_us", "us", pct(50))
  emit("p99_us", "us", pct(99))
  pool:destroy()
end

function benches.cpu()
  local jobs, fibn = num("jobs", 64), num("fibn", 27)
  local expect
  local function time_pool(threads)
    local pool = new_pool("fib", threads)
    local warm = {}
    for i = 1, 4 * threads do warm[i] = pool:run(fibn) end -- warm every worker's state
    pool:wait()
    expect = warm[1]:get()
    local tasks = {}
    local s = now_ms()
    for i = 1, jobs do tasks[i] = pool:run(fibn) end
    pool:wait()
    local ms = now_ms() - s
    assert(tasks[jobs]:get() == expect, "cpu: wrong result")
    pool:destroy()
    return ms
  end
  local t2 = time_pool(2)
  local t1 = time_pool(1)
  local fib = dofile(task "fib")
  local sink = 0
  for _ = 1, 4 do sink = sink + fib(fibn) end
  local s = now_ms()
  for _ = 1, jobs do sink = sink + fib(fibn) end
  local tin = now_ms() - s
  assert(sink == (jobs + 4) * expect)
  emit("speedup_2v1", "x", t1 / t2)
  emit("overhead_1v_inline_pct", "%", (t1 - tin) / tin * 100)
end

local function records(n)
  local r = {}
  for i = 1, n do r[i] = { id = i, name = "item" .. i, tags = { "a", "b" } } end
  return r
end

function benches.payload()
  local n = num("records", 100000)
  local pool = new_pool("echo", 2)
  bounded(pool, 200, 64)
  local small = records(1000)
  for _ = 1, 3 do pool:run(small):get() end
  local recs = records(n)
  local s = now_ms()
  local back = pool:run(recs):get()
  local ms = now_ms() - s
  assert(#back == n and back[n].name == "item" .. n and back[n].tags[2] == "b",
    "payload came back wrong")
  emit("roundtrip_ms", "ms", ms)
  pool:destroy()
end

-- The floor under payload (pool "floor" in bench/run.lua): the same records copied
-- there and back as two pure-Lua deep copies inside this one state, no pool at all.
local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[deep_copy(k)] = deep_copy(x) end
  return c
end

function benches.payload_floor()
  local n = num("records", 100000)
  for _ = 1, 3 do deep_copy(deep_copy(records(1000))) end
  local recs = records(n)
  local s = now_ms()
  local back = deep_copy(deep_copy(recs))
  local ms = now_ms() - s
  assert(#back == n and back[n].name == "item" .. n and back[n].tags[2] == "b",
    "payload floor came back wrong")
  emit("roundtrip_ms", "ms", ms)
end

function benches.isolate()
  local ok, pool = pcall(new_pool, "empty", 2, { isolateWorkers = true })
  if not ok then return na("ms_per_task", pool) end
  local n = num("n", 200)
  local ms
  ok, ms = pcall(function()
    for _ = 1, 3 do pool:run(0):get() end
    local s = now_ms()
    for _ = 1, n do pool:run(0):get() end
    return now_ms() - s
  end)
  pcall(pool.destroy, pool)
  if not ok then return na("ms_per_task", ms) end
  emit("ms_per_task", "ms", ms / n)
end

function benches.memory()
  local workers = num("workers", 8)
  collectgarbage(); collectgarbage()
  sleep_ms(100)
  local rss0 = tree_rss_bytes()
  local pool = new_pool("sleep", workers)
  -- one sleeping task per worker, so every worker is up and has run a task
  for _ = 1, workers do pool:run(num("sleep_ms", 100)) end
  pool:wait()
  sleep_ms(200) -- idle
  collectgarbage(); collectgarbage()
  -- the host and its worker processes (runtime=process), see tree_rss_bytes
  emit("mib_per_worker", "MiB", (tree_rss_bytes() - rss0) / workers / 1048576)
  pool:destroy()
end

-- Channels between two workers (luapool only: the peers have none to compare).
function benches.channel()
  if b.opt.runtime == "process" then -- a channel is shared memory, within one process
    local why = "a channel cannot cross to a process worker"
    return na("pingpong_p50_us", why), na("values_per_s", why)
  end
  local pool = new_pool("channel", 2)
  local ping, pong = luapool.channel(1), luapool.channel(1)
  local n, warm = num("n", 20000), num("warm", 2000)
  local echo = pool:run({ ping = ping, pong = pong }, { name = "pong" })
  local us = pool:run({ ping = ping, pong = pong, n = n, warm = warm }, { name = "ping" }):get()
  assert(echo:get() == true)
  emit("pingpong_p50_us", "us", us[math.ceil(n / 2)])

  local values = num("values", 1000000)
  local ch = luapool.channel(num("capacity", 4096))
  local s = now_ms()
  local consumer = pool:run({ ch = ch }, { name = "consume" })
  local producer = pool:run({ ch = ch, n = values }, { name = "produce" })
  assert(producer:get() == true and consumer:get() == values, "channel: values lost")
  emit("values_per_s", "values/s", values / ((now_ms() - s) / 1000))
  pool:destroy()
end

function benches.startup()
  -- t0 was taken before luapool was loaded; bench/run.lua also times the whole process.
  local pool = new_pool("empty", 2)
  pool:run(0):get()
  emit("first_result_ms", "ms", now_ms() - t0)
  pool:destroy()
end

b.main("luapool", "luapool_bench.lua", benches)
