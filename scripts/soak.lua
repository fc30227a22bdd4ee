-- A mixed-operation soak: many pools over time, each given a random mix of
-- tasks (echo, raise, a short spin, a postMessage) and of what a host does to
-- them (queued and running cancels, aborts, timeouts, runAll, recycleWorkers,
-- cancelPendingTasks, get, wait, close and destroy with tasks in flight).
--
--   luajit scripts/soak.lua [--tasks N] [--seed S]     (make soak)
--
-- What it asserts does not depend on timing or on the random choices: every
-- task settles exactly once (its onDone fires once, its status is final), a
-- fulfilled task has the value it was given, a rejection has a code that
-- something the soak did explains, and at the end the process has as many
-- open fds and threads as before the first pool. The choices come from a
-- seeded generator; the seed is printed first, and --seed replays the choices
-- (not the threads' timing). Ends with one summary line, "soak: ... ok", or
-- raises naming what failed.
local luapool = require "luapool"
local lfs = require "lfs"

local function usage()
  io.stderr:write("usage: soak.lua [--tasks N] [--seed S]\n")
  os.exit(2)
end

local args = { tasks = 1000000, seed = os.time() }
do
  local i = 1
  while arg[i] do
    local k, v = arg[i]:match("^%-%-(%a+)$"), tonumber(arg[i + 1])
    if not (k and args[k] and v) then usage() end
    args[k] = math.floor(v)
    i = i + 2
  end
  if args.tasks < 1 then usage() end
end

print(("soak: seed %d, %d tasks (replay: --seed %d)"):format(args.seed, args.tasks, args.seed))
io.stdout:flush()
math.randomseed(args.seed)
local random = math.random

local function chance(p) return random() < p end

local function settled(task)
  local state = task:status()
  return state == "fulfilled" or state == "rejected"
end

local function check(cond, fmt, ...)
  if not cond then error("soak: " .. fmt:format(...), 2) end
end

---------------------------------------------------------------------------
-- The process: open fds, threads, resident memory.

local function count_fds()
  local n = 0
  for name in lfs.dir("/proc/self/fd") do
    if name ~= "." and name ~= ".." then n = n + 1 end
  end
  return n
end

local function status_field(name)
  local f = assert(io.open("/proc/self/status"))
  local text = f:read("*a")
  f:close()
  return tonumber(text:match(name .. ":%s*(%d+)"))
end

local function count_threads() return status_field("Threads") end
local function rss_mib() return status_field("VmRSS") / 1024 end

---------------------------------------------------------------------------
-- The one handler every pool runs. Its value is an integer (echo it) or a
-- table { op, v [, ms] }; it returns v unless it raises.

local function handler(t)
  if type(t) ~= "table" then return t end
  if t.op == "raise" then error(t.v, 0) end
  if t.op == "spin" then  -- bounded, so it ends even where it takes no interrupt
    local stop = os.clock() + t.ms / 1000
    while os.clock() < stop do end
  elseif t.op == "message" then
    require("luapool").postMessage(t.v)
  end
  return t.v
end

---------------------------------------------------------------------------
-- Counts for the summary.

local total = {
  tasks = 0, pools = 0, callbacks = 0, fulfilled = 0, rejected = 0, refused = 0,
  runAll = 0, recycles = 0, cancelPending = 0, cancels = 0, aborts = 0, gets = 0,
  messages = 0, gaveUp = 0,
}
local codes = {}

-- Codes a rejection may have, and the flag on a task that explains each: a
-- task carries a flag for everything the soak did that may reject it.
local explains = {
  task_error = "raises", cancelled = "cancelled", aborted = "aborted",
  timeout = "timeout", terminated = "terminated",
}

---------------------------------------------------------------------------
-- A pool in the soak, with the records of its tasks.

local Soak = {}
Soak.__index = Soak

local function random_options()
  local max = random(1, 3)
  local o = {
    handler = handler, maxThreads = max, minThreads = random(0, max),
    idleTimeout = chance(0.5) and 0 or random(0, 5),
    terminateTimeout = 5000,
  }
  if chance(0.3) then o.maxQueue = chance(0.5) and "auto" or random(1, 64) end
  if chance(0.1) then o.isolateWorkers = true end
  return o
end

local function new_soak(budget)
  local pool = luapool.new(random_options())
  local s = setmetatable({ pool = pool, recs = {}, live = {}, budget = budget,
                           submitted = 0, ctls = {} }, Soak)
  if chance(0.3) then pool:pollfd() end  -- its pipe must close with the pool
  pool:on("message", function() total.messages = total.messages + 1 end)
  pool:on("error", function(e)
    check(e.code == "terminate_timeout", "unexpected pool error event: %s", tostring(e))
    total.gaveUp = total.gaveUp + 1
  end)
  total.pools = total.pools + 1
  return s
end

-- A task value, what it returns, and whether it raises.
local function random_value(i)
  local r = random()
  if r < 0.90 then return i, i end
  if r < 0.95 then return { op = "raise", v = "soak " .. i }, "soak " .. i, true end
  if r < 0.98 then return { op = "spin", v = i, ms = random() * 2 }, i end
  return { op = "message", v = i }, i
end

function Soak:controller()
  local ctls = self.ctls
  local k = random(1, 4)
  if not ctls[k] or ctls[k].signal.aborted then ctls[k] = luapool.AbortController() end
  return ctls[k]
end

-- Keeps the record of a task the pool accepted, with its one onDone.
function Soak:track(task, expect, raises, opts)
  local rec = { task = task, expect = expect, calls = 0,
                raises = raises, timeout = opts and opts.timeout ~= nil,
                signal = opts and opts.signal }
  local function done(ok, ...)
    rec.calls = rec.calls + 1
    total.callbacks = total.callbacks + 1
    rec.ok, rec.n, rec.value = ok, select("#", ...), ...
  end
  if chance(0.9) then task:onDone(done) else rec.late = done end  -- some after settling
  self.recs[#self.recs + 1] = rec
  self.live[#self.live + 1] = rec
  self.submitted = self.submitted + 1
  total.tasks = total.tasks + 1
end

-- A full queue refuses a run; and runAll's task for a worker that is leaving
-- goes to the shared queue, so a full one refuses runAll too.
local function refused(err)
  check(luapool.isError(err) and err.code == "queue_full", "run raised: %s", tostring(err))
  total.refused = total.refused + 1
end

function Soak:submit()
  local i = total.tasks + 1
  local value, expect, raises = random_value(i)
  local opts
  if chance(0.05) then opts = { timeout = random() * 3 } end
  if chance(0.05) then
    opts = opts or {}
    opts.signal = self:controller().signal
  end
  local ok, task = pcall(self.pool.run, self.pool, value, opts)
  if not ok then
    refused(task)
    self.pool:poll(1)
    return
  end
  self:track(task, expect, raises, opts)
end

function Soak:run_all()
  local i = total.tasks + 1
  local ok, tasks = pcall(self.pool.runAll, self.pool, i)
  if not ok then return refused(tasks) end
  for _, task in ipairs(tasks) do self:track(task, i) end
  total.runAll = total.runAll + 1
end

-- Some tracked task still in flight, or nil; drops settled ones as it looks.
function Soak:some_live()
  local live = self.live
  for _ = 1, 4 do
    local n = #live
    if n == 0 then return nil end
    local k = random(1, n)
    local rec = live[k]
    if not settled(rec.task) then return rec end
    live[k], live[n] = live[n], nil
  end
end

-- Flags every task not settled yet with what may now reject it.
function Soak:flag_unsettled(flag)
  for _, rec in ipairs(self.recs) do
    if not settled(rec.task) then rec[flag] = true end
  end
end

-- Cancels a tracked task in flight, running rather than queued if it finds one.
function Soak:cancel()
  local rec = self:some_live()
  if not rec then return end
  for _ = 1, 8 do
    if rec.task:status() == "running" then break end
    rec = self:some_live() or rec
  end
  rec.cancelled, rec.aborted = true, true
  total.cancels = total.cancels + 1
  if rec.task:cancel() then
    local state = rec.task:status()
    check(state == "rejected", "cancel returned true, but the task is %s", tostring(state))
  end
end

function Soak:abort()
  local ctl = self.ctls[random(1, 4)]
  if not ctl or ctl.signal.aborted then return end
  for _, rec in ipairs(self.recs) do
    if rec.signal == ctl.signal then rec.aborted = true end
  end
  ctl.abort()
  total.aborts = total.aborts + 1
end

function Soak:get()
  local rec = self:some_live()
  if not rec then return end
  pcall(rec.task.get, rec.task)
  check(settled(rec.task), "get returned with the task %s", tostring(rec.task:status()))
  total.gets = total.gets + 1
end

-- One thing a host does to a pool, picked at random.
function Soak:step()
  local r = random()
  local pool = self.pool
  if r < 0.70 then
    for _ = 1, random(1, 64) do self:submit() end
  elseif r < 0.80 then pool:poll()
  elseif r < 0.84 then pool:wait(random(0, 2))
  elseif r < 0.89 then
    for _ = 1, random(1, 8) do self:cancel() end
  elseif r < 0.92 then self:abort()
  elseif r < 0.95 then self:get()
  elseif r < 0.97 then self:run_all()
  elseif r < 0.98 then
    self:flag_unsettled("cancelled")
    pool:cancelPendingTasks()
    total.cancelPending = total.cancelPending + 1
  elseif r < 0.985 then
    pool:recycleWorkers()
    total.recycles = total.recycles + 1
  else
    pool:poll(random(0, 2))
  end
end

-- Checks one task once its pool is gone and every callback has run.
local function verify(rec)
  local task = rec.task
  local state = task:status()
  check(state == "fulfilled" or state == "rejected", "a task is still %s", tostring(state))
  check(rec.calls == 1, "a task's onDone ran %d times", rec.calls)
  if state == "fulfilled" then
    check(rec.ok == true and rec.n == 1 and rec.value == rec.expect,
          "a task fulfilled with %s, not %s", tostring(rec.value), tostring(rec.expect))
    check(not rec.raises, "a task that raises was fulfilled")
    total.fulfilled = total.fulfilled + 1
  else
    local err = rec.value
    check(rec.ok == false and luapool.isError(err), "a rejection that is not a luapool error")
    local code = err.code
    check(explains[code] and rec[explains[code]],
          "a task rejected with %s, which nothing the soak did explains", tostring(err))
    if code == "task_error" then
      check(err.value == rec.expect, "task_error carries %s, not %s", tostring(err.value), rec.expect)
    end
    codes[code] = (codes[code] or 0) + 1
    total.rejected = total.rejected + 1
  end
end

-- Ends the pool one way or another, then checks every task it had.
function Soak:finish()
  local pool, r = self.pool, random()
  if r < 0.4 then
    pool:wait()
    pool:destroy()
  elseif r < 0.6 then
    pool:close()
  else  -- with tasks queued and running
    self:flag_unsettled("terminated")
    pool:destroy()
  end
  pool:poll()  -- the callbacks of the tasks destroy rejected
  for _, rec in ipairs(self.recs) do
    if rec.late then rec.task:onDone(rec.late) end
  end
  pool:poll()  -- the callbacks registered late, on settled tasks
  for _, rec in ipairs(self.recs) do verify(rec) end
end

---------------------------------------------------------------------------
-- The soak: one to three pools alive at a time, each given about a hundredth
-- of the tasks (so about a hundred pools, whatever the count).

-- A first pool, so what loads once (libraries, the module) is in the baseline.
do
  local pool = luapool.new { handler = handler, minThreads = 1, maxThreads = 1 }
  pool:run(1):get()
  pool:destroy()
end
collectgarbage()
local start = { fds = count_fds(), threads = count_threads(), rss = rss_mib(), t = os.time() }

local max_budget = math.max(1000, math.floor(args.tasks / 50))
local soaks, next_report = {}, args.tasks / 10
while total.tasks < args.tasks do
  if #soaks == 0 or (#soaks < 3 and chance(0.01)) then
    soaks[#soaks + 1] = new_soak(random(1, max_budget))
  end
  local k = random(1, #soaks)
  local s = soaks[k]
  s:step()
  if s.submitted >= s.budget then
    s:finish()
    table.remove(soaks, k)
  end
  if total.tasks >= next_report then
    print(("soak: %d tasks, %d pools, rss %.1f MiB"):format(total.tasks, total.pools, rss_mib()))
    io.stdout:flush()
    next_report = next_report + args.tasks / 10
  end
end
for _, s in ipairs(soaks) do s:finish() end

check(total.callbacks == total.tasks, "%d onDone calls for %d tasks", total.callbacks, total.tasks)
check(total.fulfilled + total.rejected == total.tasks, "settled %d of %d tasks",
      total.fulfilled + total.rejected, total.tasks)
collectgarbage()
collectgarbage()
local fds = count_fds()
check(fds == start.fds, "%d fds open at the start, %d at the end", start.fds, fds)
-- A worker given up on (terminate_timeout) runs on detached until its spin
-- ends, a few ms; only then may the count lag.
local threads, deadline = count_threads(), os.time() + (total.gaveUp > 0 and 30 or 0)
while threads ~= start.threads and os.time() < deadline do threads = count_threads() end
check(threads == start.threads, "%d threads at the start, %d at the end", start.threads, threads)

local parts = {}
for _, code in ipairs { "task_error", "cancelled", "aborted", "timeout", "terminated" } do
  parts[#parts + 1] = ("%s %d"):format(code, codes[code] or 0)
end
print(("soak: seed %d: %d tasks in %d pools settled once each (%d fulfilled, %d rejected: %s); " ..
       "%d refused queue_full, %d runAll, %d recycleWorkers, %d cancelPendingTasks, %d cancels, " ..
       "%d aborts, %d gets, %d messages, %d workers given up on; fds %d -> %d, threads %d -> %d, " ..
       "rss %.1f -> %.1f MiB, %d s: ok"):format(
  args.seed, total.tasks, total.pools, total.fulfilled, total.rejected, table.concat(parts, ", "),
  total.refused, total.runAll, total.recycles, total.cancelPending, total.cancels, total.aborts,
  total.gets, total.messages, total.gaveUp, start.fds, fds, start.threads, threads, start.rss, rss_mib(),
  os.time() - start.t))
