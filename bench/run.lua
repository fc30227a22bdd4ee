-- Benchmark driver: runs every side (luapool, Tinypool, Piscina, luv; luapool and
-- Tinypool also on their process runtimes) as separate processes, collects the JSON
-- lines they print, and writes bench/results/latest.jsonl plus a table of luapool
-- against each peer.
--
--   luajit bench/run.lua [--quick] [--reps N] [--only BENCH,...] [--pools POOL,...]
--                        [--out FILE] [-v]
--
-- Run from anywhere; `require "luapool"` must work in the environment (make bench
-- passes the Makefile's LUAPOOL_ENV). Needs luajit (for ffi's monotonic clock) and
-- lua-cjson. Benchmarks are not tests: this exits 0 unless nothing at all was measured.
local ffi = require "ffi"
local cjson = require "cjson"
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } benchrun_timespec;
  int clock_gettime(int clk, benchrun_timespec *ts);
  int getpid(void);
  int kill(int pid, int sig);
  long sysconf(int name);
]]
local ts = ffi.new "benchrun_timespec"
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6
end

local BENCH = arg[0]:match "^(.*)/" or "."
local LUAJIT = arg[-1] or "luajit"

-- Workloads ---------------------------------------------------------------------------
-- Sizes are passed to every side as key=value arguments. `repsx` multiplies the number
-- of processes of a bench (see cpu in README.md).
local BENCHES = {
  { name = "throughput", metrics = {
      { "bounded64", "tasks/s", "higher" }, { "burst200k", "tasks/s", "higher" } },
    full = { bounded = 50000, inflight = 64, burst = 200000, warm = 2000 },
    quick = { bounded = 20000, inflight = 64, burst = 50000, warm = 1000 } },
  { name = "latency", metrics = { { "p50_us", "us", "lower" }, { "p99_us", "us", "lower" } },
    full = { n = 20000, warm = 2000 },
    quick = { n = 5000, warm = 1000 } },
  -- latency and throughput again, each run beside a load the driver starts and ends
  -- (see Loads below): busy = one busy-loop process per core; contended = another
  -- process running luapool's bounded64 workload on 2 workers
  { name = "loaded", load = "busy", runs = { "latency", "throughput" } },
  { name = "contended", load = "contended", runs = { "latency", "throughput" } },
  { name = "cpu", metrics = {
      { "speedup_2v1", "x", "higher" }, { "overhead_1v_inline_pct", "%", "lower" } },
    full = { jobs = 64, fibn = 27 }, quick = { jobs = 64, fibn = 27 }, repsx = 3 },
  { name = "payload", metrics = { { "roundtrip_ms", "ms", "lower" } },
    full = { records = 100000 }, quick = { records = 100000 },
    -- floor: two pure-Lua deep copies of the records in one state (luapool_bench.lua)
    pools = { luapool = true, ["luapool-process"] = true, tinypool = true,
              ["tinypool-process"] = true, piscina = true, luv = true, floor = true } },
  { name = "isolate", metrics = { { "ms_per_task", "ms", "lower" } },
    full = { n = 200 }, quick = { n = 20 } },
  { name = "memory", metrics = { { "mib_per_worker", "MiB", "lower" } },
    full = { workers = 8, sleep_ms = 100 }, quick = { workers = 8, sleep_ms = 100 } },
  { name = "startup", metrics = { { "first_result_ms", "ms", "lower" } },
    full = {}, quick = {}, outer = "first_result_ms" },
  { name = "channel", metrics = {
      { "pingpong_p50_us", "us", "lower" }, { "values_per_s", "values/s", "higher" } },
    full = { n = 20000, warm = 2000, values = 1000000 },
    quick = { n = 5000, warm = 1000, values = 200000 },
    pools = { luapool = true, ["luapool-process"] = true } }, -- process: n/a
  -- the luapool command against a single-threaded loop and GNU parallel (cli_bench.lua)
  { name = "cli", metrics = {
      { "identity_lines_per_s", "lines/s", "higher" }, { "cpu_lines_per_s", "lines/s", "higher" } },
    full = { lines = 1000000 }, quick = { lines = 200000 },
    pools = { luapool = true, inline = true, parallel = true } },
}
do -- a loaded bench measures the metrics of the benches it runs, with their sizes
  local by = {}
  for _, b in ipairs(BENCHES) do by[b.name] = b end
  for _, b in ipairs(BENCHES) do
    if b.runs then
      b.metrics, b.full, b.quick = {}, {}, {}
      for _, r in ipairs(b.runs) do
        for _, m in ipairs(by[r].metrics) do b.metrics[#b.metrics + 1] = m end
        b.full[r], b.quick[r] = by[r].full, by[r].quick
      end
    end
  end
end
-- *-process: the same library with runtime = "process" / runtime: 'child_process'
local POOLS = { "luapool", "luapool-process", "tinypool", "tinypool-process", "piscina", "luv",
                "inline", "parallel", "floor" }
-- the table's comparison columns: { pool, peer, heading }
local COMPARE = {}
for _, p in ipairs { "tinypool", "piscina", "luv", "inline", "parallel", "floor" } do
  COMPARE[#COMPARE + 1] = { "luapool", p, "vs " .. p }
end
COMPARE[#COMPARE + 1] = { "luapool-process", "tinypool-process", "process vs tinypool-process" }
COMPARE[#COMPARE + 1] = { "luapool-process", "luapool", "process vs threads" }
-- the sides of a bench that names none
local DEFAULT_SIDES = { luapool = true, ["luapool-process"] = true, tinypool = true,
                        ["tinypool-process"] = true, piscina = true, luv = true }

-- Options -----------------------------------------------------------------------------
local quick, reps, only, pools_only, verbose = false, nil, nil, nil, false
local out = BENCH .. "/results/latest.jsonl"
local function set(csv)
  local s = {}
  for w in csv:gmatch "[^,%s]+" do s[w] = true end
  return s
end
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--quick" then quick = true
    elseif a == "--reps" then i = i + 1; reps = tonumber(arg[i])
    elseif a == "--only" then i = i + 1; only = set(arg[i])
    elseif a == "--pools" then i = i + 1; pools_only = set(arg[i])
    elseif a == "--out" then i = i + 1; out = arg[i]
    elseif a == "-v" or a == "--verbose" then verbose = true
    else
      io.stderr:write("usage: luajit bench/run.lua [--quick] [--reps N] [--only BENCH,...] [--pools POOL,...] [--out FILE] [-v]\n")
      os.exit(2)
    end
    i = i + 1
  end
end
reps = reps or (quick and 3 or 5)

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

-- Which sides can run here ------------------------------------------------------------
local skip = {} -- pool -> reason
do
  local ok, err = pcall(require, "luapool")
  if not ok then skip.luapool = "require 'luapool' failed: " .. tostring(err):match "[^\n]*" end
  skip["luapool-process"] = skip.luapool
  if not pcall(require, "luv") then skip.luv = "require 'luv' failed (apt-get install lua-luv)" end
  if os.execute "command -v parallel >/dev/null 2>&1" ~= 0 then
    skip.parallel = "GNU parallel not found (apt-get install parallel)"
  end
  if os.execute "node --version >/dev/null 2>&1" ~= 0 then
    skip.tinypool = "node not found"; skip.piscina = "node not found"
  else
    for _, p in ipairs { "tinypool", "piscina" } do
      if not exists(BENCH .. "/node/node_modules/" .. p .. "/package.json") then
        skip[p] = "bench/node/node_modules/" .. p .. " missing (cd bench/node && npm ci)"
      end
    end
  end
  skip["tinypool-process"] = skip.tinypool
end

local function side_cmd(pool, bench, args)
  local kv = {}
  for k, v in pairs(args) do kv[#kv + 1] = k .. "=" .. v end
  table.sort(kv)
  local kvs = table.concat(kv, " ")
  local tail = bench .. " " .. kvs
  if bench == "cli" then
    return "exec " .. sh_quote(LUAJIT) .. " " .. sh_quote(BENCH .. "/cli_bench.lua") .. " " .. tail
      .. " side=" .. pool
  elseif pool == "floor" then
    return "exec " .. sh_quote(LUAJIT) .. " " .. sh_quote(BENCH .. "/luapool_bench.lua") .. " " .. bench
      .. "_floor " .. kvs
  elseif pool == "luapool" or pool == "luapool-process" then
    return "exec " .. sh_quote(LUAJIT) .. " " .. sh_quote(BENCH .. "/luapool_bench.lua") .. " " .. tail
      .. (pool == "luapool-process" and " runtime=process" or "")
  elseif pool == "luv" then
    local threads = bench == "memory" and args.workers or 2
    return "exec " .. sh_quote(LUAJIT) .. " " .. sh_quote(BENCH .. "/luv_bench.lua") .. " " .. tail
      .. " threads=" .. threads
  else
    return "exec node " .. sh_quote(BENCH .. "/node/bench.mjs") .. " " .. pool .. " " .. tail
  end
end

-- One process: returns { metric = value or {na = why} }, and the wall time from spawn to
-- the first line it printed (for startup).
-- Tinypool's child_process runtime passes 3k-13k tasks/s: 200k tasks five times over in
-- three benches took about 20 minutes, so it gets fewer (a rate is what is measured).
local FEWER = { ["tinypool-process"] = { bounded = 10000, burst = 20000 } }

local function run_once(pool, bench, args)
  local fewer = FEWER[pool]
  if fewer then
    local a = {}
    for k, v in pairs(args) do a[k] = fewer[k] and math.min(v, fewer[k]) or v end
    args = a
  end
  local cmd = side_cmd(pool, bench, args)
  if verbose then io.stderr:write("  $ ", cmd, "\n") end
  local s = now_ms()
  local p = io.popen(cmd, "r")
  local first_ms
  local got = {}
  for line in p:lines() do
    first_ms = first_ms or (now_ms() - s)
    local ok, obj = pcall(cjson.decode, line)
    if ok and type(obj) == "table" and obj.metric then
      if obj.na then got[obj.metric] = { na = obj.na }
      elseif type(obj.value) == "number" then got[obj.metric] = obj.value end
      if verbose then io.stderr:write("    ", line, "\n") end
    else
      io.stderr:write("  ", pool, " ", bench, ": ", line, "\n")
    end
  end
  p:close()
  return got, first_ms
end

-- Loads ------------------------------------------------------------------------------
-- A loaded bench starts its load before each run of a side and kills it after (by pid),
-- so every run has the same load and no load outlives its run. Each load process also
-- ends by itself when its time is up (LOAD_S) or the driver is gone (parent=PID), and
-- the driver kills what is left on an error or Ctrl-C (see the run below).
local LOAD_S = 900
local function ncpu()
  local n = tonumber(ffi.C.sysconf(84)) -- _SC_NPROCESSORS_ONLN
  return n and n > 0 and n or 1
end
local live = {} -- the load processes running: { pid, h }

local function stop_loads()
  for _, l in ipairs(live) do ffi.C.kill(l.pid, 9) end
  for _, l in ipairs(live) do l.h:close() end -- reaps it
  live = {}
end

local function load_cmds(kind)
  local tail = " seconds=" .. LOAD_S .. " parent=" .. ffi.C.getpid()
  if kind == "busy" then
    local cmds = {}
    for i = 1, ncpu() do
      cmds[i] = sh_quote(LUAJIT) .. " " .. sh_quote(BENCH .. "/load.lua") .. " busy" .. tail
    end
    return cmds
  end
  return { sh_quote(LUAJIT) .. " " .. sh_quote(BENCH .. "/luapool_bench.lua") .. " contend" .. tail }
end

-- Starts the load and returns once every process of it says it is running.
local function start_load(kind)
  for _, cmd in ipairs(load_cmds(kind)) do
    if verbose then io.stderr:write("  load $ ", cmd, "\n") end
    local h = assert(io.popen("echo $$; exec " .. cmd, "r")) -- exec: the shell's pid is its
    local pid = tonumber(h:read "*l")
    if not pid then h:close(); error("load " .. kind .. " did not start: " .. cmd) end
    live[#live + 1] = { pid = pid, h = h }
  end
  for _, l in ipairs(live) do
    if l.h:read "*l" ~= "ready" then error("load " .. kind .. " did not start (pid " .. l.pid .. ")") end
  end
end

local function median(xs)
  local t = {}
  for i, x in ipairs(xs) do t[i] = x end
  table.sort(t)
  local n = #t
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

-- Run ---------------------------------------------------------------------------------
local function loadavg()
  local f = io.open "/proc/loadavg"
  if not f then return nil end
  local l = tonumber(f:read "*a":match "^(%S+)")
  f:close()
  return l
end
local load0 = loadavg()
if load0 and load0 > 1.0 then
  io.stderr:write(string.format("warning: load average %.2f before starting: other work on this machine skews the figures\n", load0))
end
local started = now_ms()
local samples = {} -- samples[bench][metric][pool] = { values }
local na = {}      -- na[bench][metric][pool] = reason
local pools = {}
for _, p in ipairs(POOLS) do
  if not pools_only or pools_only[p] then
    if skip[p] then io.stderr:write("skipping ", p, ": ", skip[p], "\n")
    else pools[#pools + 1] = p end
  end
end

io.stderr:write(string.format("luapool bench (%s, %d reps): %s\n", quick and "quick" or "full",
  reps, table.concat(pools, ", ")))
local function measure(b)
  if not only or only[b.name] then
    local args = quick and b.quick or b.full
    samples[b.name], na[b.name] = {}, {}
    for _, m in ipairs(b.metrics) do samples[b.name][m[1]], na[b.name][m[1]] = {}, {} end
    local bs = now_ms()
    local sides = {}
    for _, p in ipairs(pools) do
      if (b.pools or DEFAULT_SIDES)[p] then sides[#sides + 1] = p end
    end
    if b.outer then -- a fresh process is the workload: one untimed run per side first
      for _, p in ipairs(sides) do run_once(p, b.name, args) end
    end
    local n = reps * (b.repsx or 1)
    for _ = 1, n do
      for _, p in ipairs(sides) do -- interleaved, so drift on the machine hits every side
        local got, first_ms = {}, nil
        if b.load then
          for _, r in ipairs(b.runs) do
            start_load(b.load)
            local g = run_once(p, r, args[r])
            stop_loads()
            for k, v in pairs(g) do got[k] = v end
          end
        else
          got, first_ms = run_once(p, b.name, args)
        end
        for _, m in ipairs(b.metrics) do
          local v = got[m[1]]
          if type(v) == "table" then na[b.name][m[1]][p] = v.na
          elseif v then
            if b.outer == m[1] then v = first_ms end
            local t = samples[b.name][m[1]]
            t[p] = t[p] or {}
            table.insert(t[p], v)
          end
        end
      end
    end
    io.stderr:write(string.format("  %-10s %6.1f s  (load average %.2f)\n", b.name,
      (now_ms() - bs) / 1000, loadavg() or 0))
  end
end
for _, b in ipairs(BENCHES) do
  -- an error or Ctrl-C ("interrupted!") ends the run, never with a load left running
  local ok, err = xpcall(measure, debug.traceback, b)
  stop_loads()
  if not ok then
    io.stderr:write(tostring(err), "\n")
    os.exit(1)
  end
end
local load1 = loadavg()

-- Results -----------------------------------------------------------------------------
local rows = {}
local dir = out:match "^(.*)/"
if dir then os.execute("mkdir -p " .. sh_quote(dir)) end
local f = assert(io.open(out, "w"))
for _, b in ipairs(BENCHES) do
  if samples[b.name] then
    for _, m in ipairs(b.metrics) do
      local row = { bench = b.name, metric = m[1], unit = m[2], better = m[3], fig = {} }
      for _, p in ipairs(POOLS) do
        local xs = samples[b.name][m[1]][p]
        if xs and #xs > 0 then
          local t = { unpack(xs) }
          table.sort(t)
          local rec = { bench = b.name, pool = p, metric = m[1], unit = m[2],
                        median = median(xs), min = t[1], max = t[#t], reps = #xs }
          row.fig[p] = rec
          f:write((cjson.encode(rec):gsub("\\/", "/")), "\n") -- cjson escapes "/"
        end
      end
      rows[#rows + 1] = row
    end
  end
end
f:close()

local function fmt(v)
  if not v then return "n/a" end
  local a = math.abs(v)
  if a >= 1e6 then return string.format("%.2fM", v / 1e6)
  elseif a >= 1e4 then return string.format("%.1fk", v / 1e3)
  elseif a >= 100 then return string.format("%.0f", v)
  elseif a >= 10 then return string.format("%.1f", v)
  else return string.format("%.2f", v) end
end

-- ratio: how many times better `pool` is than the peer, whatever the metric's
-- direction (> 1: pool better). For percentages (overhead), a ratio means little
-- around 0, so the table shows the difference in points instead (< 0: pool better).
local function compare(row, pool, peer)
  local a, b = row.fig[pool], row.fig[peer]
  if not a or not b then return "" end
  if row.unit == "%" then return string.format("%+.1fpt", a.median - b.median) end
  local r
  if row.better == "higher" then r = a.median / b.median else r = b.median / a.median end
  if r ~= r or r == math.huge then return "" end
  return string.format("%.2fx", r)
end

-- columns only for the pools this run measured, and comparisons of two of them
local ran = {}
for _, p in ipairs(pools) do ran[p] = true end
local shown, shown_cmp = {}, {}
for _, p in ipairs(POOLS) do if ran[p] then shown[#shown + 1] = p end end
for _, c in ipairs(COMPARE) do
  if ran[c[1]] and ran[c[2]] then shown_cmp[#shown_cmp + 1] = c end
end
local header = { "bench", "metric", "unit", "better" }
for _, p in ipairs(shown) do header[#header + 1] = p end
for _, c in ipairs(shown_cmp) do header[#header + 1] = c[3] end
local lines = { header }
for _, row in ipairs(rows) do
  local l = { row.bench, row.metric, row.unit, row.better }
  for _, p in ipairs(shown) do
    local r = row.fig[p]
    l[#l + 1] = r and string.format("%s (%s-%s)", fmt(r.median), fmt(r.min), fmt(r.max)) or (na[row.bench][row.metric][p] and "n/a" or "-")
  end
  for _, c in ipairs(shown_cmp) do l[#l + 1] = compare(row, c[1], c[2]) end
  lines[#lines + 1] = l
end
local width = {}
for _, l in ipairs(lines) do
  for i, c in ipairs(l) do width[i] = math.max(width[i] or 0, #c) end
end
print()
print("Medians of " .. reps .. " runs (cpu: " .. reps * 3 .. "), with (min-max) over the runs;")
print("the same in " .. out .. ". loaded: beside one busy-loop process per core (" .. ncpu()
  .. " here); contended: beside another process running luapool's bounded64 on 2 workers.")
print(string.format("The machine: %d cores, load average (1 min) %s before the run, %s after.",
  ncpu(), load0 and string.format("%.2f", load0) or "?", load1 and string.format("%.2f", load1) or "?"))
print("vs PEER = how many times better luapool is than PEER (higher is better: > 1 means")
print("luapool wins, whether the metric itself is better higher or lower); for % metrics the")
print("difference luapool - PEER in points (lower is better). process vs tinypool-process:")
print("the same for luapool-process against tinypool-process; process vs threads:")
print("luapool-process against luapool. n/a: the pool cannot run it; -: not measured")
print("(skipped or failed).")
print()
for li, l in ipairs(lines) do
  local cells = {}
  for i, c in ipairs(l) do
    cells[i] = (i <= 4) and (c .. string.rep(" ", width[i] - #c)) or (string.rep(" ", width[i] - #c) .. c)
  end
  print(table.concat(cells, "  "))
  if li == 1 then
    local dash = {}
    for i = 1, #l do dash[i] = string.rep("-", width[i]) end
    print(table.concat(dash, "  "))
  end
end
print()
for p, why in pairs(skip) do
  if not pools_only or pools_only[p] then print("skipped " .. p .. ": " .. why) end
end
local seen = {}
for _, b in ipairs(BENCHES) do
  for _, m in ipairs(b.metrics) do
    for _, p in ipairs(POOLS) do
      local why = na[b.name] and na[b.name][m[1]][p]
      if why and not seen[p .. why] then
        seen[p .. why] = true
        print(string.format("n/a %s %s: %s", p, m[1], why))
      end
    end
  end
end
print(string.format("wrote %s in %.0f s", out, (now_ms() - started) / 1000))
local any = false
for _, row in ipairs(rows) do if next(row.fig) then any = true end end
if not any then
  io.stderr:write("no figure was measured\n")
  os.exit(1)
end
