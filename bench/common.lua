-- What every Lua side of the benchmarks shares: a monotonic clock, the
-- command line (BENCH key=value ...), JSON lines out, and RSS.
--   local b = dofile(dir .. "/common.lua")
local ffi = require "ffi"
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk, bench_timespec *ts);
  int setenv(const char *name, const char *value, int overwrite);
  int poll(void *fds, unsigned long nfds, int timeout);
  int getppid(void);
]]
local cjson = require "cjson"

local b = {}
local ts = ffi.new "bench_timespec"

function b.now_ms() -- CLOCK_MONOTONIC
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1e3 + tonumber(ts.tv_nsec) / 1e6
end

b.bench = arg[1]
b.opt = {}
for i = 2, #arg do
  local k, v = arg[i]:match "^([%w_]+)=(.*)$"
  if k then b.opt[k] = tonumber(v) or v end
end
function b.num(k, d) return tonumber(b.opt[k]) or d end

io.stdout:setvbuf "line"
function b.emit(metric, unit, value)
  io.stdout:write(cjson.encode { metric = metric, unit = unit, value = value }, "\n")
end
function b.na(metric, why)
  io.stdout:write(cjson.encode { metric = metric, na = tostring(why) }, "\n")
end

local function vm_rss(pid) -- bytes, 0 if the process is gone
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return 0 end
  local kb = f:read("*a"):match "VmRSS:%s+(%d+) kB"
  f:close()
  return kb and tonumber(kb) * 1024 or 0
end

function b.rss_bytes() return vm_rss "self" end

-- RSS of the process tree: this process plus every process below it (the worker
-- processes of runtime=process; thread pools have none), each counted whole (RSS, so
-- pages shared with the host, such as libluajit's code, count in every process). The
-- shell that lists the tree leaves itself out, and so everything it runs.
local WALK = [[walk() { for c in $(cat /proc/$1/task/*/children 2>/dev/null); do
  [ "$c" = "$$" ] || { echo "$c"; walk "$c"; }; done; }; walk $PPID]]
function b.tree_rss_bytes()
  local total = vm_rss "self"
  local f = assert(io.popen(WALK))
  for pid in f:lines() do total = total + vm_rss(pid) end
  f:close()
  return total
end

function b.sleep_ms(ms) ffi.C.poll(nil, 0, ms) end
function b.setenv(k, v) ffi.C.setenv(k, v, 1) end

-- For a load process (load.lua, luapool_bench.lua contend): a function that says
-- whether to go on, false once seconds=S have passed or the parent is no longer
-- parent=PID (the driver ended without killing us). Cheap enough to call every ms.
function b.load_guard()
  local deadline = b.now_ms() + b.num("seconds", 600) * 1000
  local parent = b.num("parent")
  return function()
    return b.now_ms() < deadline and (not parent or ffi.C.getppid() == parent)
  end
end

-- Runs benches[b.bench] of the side named `side`, or says how to call it.
function b.main(side, script, benches)
  if not benches[b.bench] then
    io.stderr:write("usage: luajit ", script,
      " throughput|latency|cpu|payload|isolate|memory|startup|channel [key=value ...]\n")
    os.exit(2)
  end
  local ok, err = xpcall(benches[b.bench], debug.traceback)
  if not ok then
    io.stderr:write(side, " ", b.bench, ": ", tostring(err), "\n")
    os.exit(1)
  end
end

return b
