-- Counts the primes below a limit, first on the main thread, then split
-- into chunks on a pool with one worker per core, and prints the speed-up.
--   luajit examples/primes.lua [limit] [chunks]
local luapool = require "luapool"
local now = require("luapool.core").now  -- a monotonic clock in ms

local limit = tonumber(arg and arg[1]) or 4000000
local nchunks = tonumber(arg and arg[2]) or 64
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local taskfile = dir .. "/count_primes.lua"

local ranges = {}
local step = math.ceil(limit / nchunks)
for i = 1, nchunks do
  ranges[i] = { from = (i - 1) * step + 1, to = math.min(i * step, limit) }
end

-- Inline, on this thread, with the very function the workers run.
local count_primes = dofile(taskfile)
local t0 = now()
local inline = 0
for _, r in ipairs(ranges) do inline = inline + count_primes(r) end
local inline_ms = now() - t0

-- On the pool: one task per chunk, results in order.
local threads = luapool.cpus()
local pool = luapool.new { filename = taskfile, minThreads = threads, maxThreads = threads }
pool:runAll(ranges[1])  -- warm up every worker: its task file loaded
pool:wait()
t0 = now()
local total = 0
for _, n in ipairs(pool:map(ranges)) do total = total + n end
local pool_ms = now() - t0

local per_worker = {}
for _, t in ipairs(pool.threads) do per_worker[#per_worker + 1] = ("worker %d: %d tasks"):format(t.id, t.tasks) end
pool:destroy()

assert(total == inline, "the pool and the main thread disagree")
print(("primes below %d: %d"):format(limit, total))
print(("main thread: %8.1f ms"):format(inline_ms))
print(("pool of %d:   %8.1f ms  (%s)"):format(threads, pool_ms, table.concat(per_worker, ", ")))
print(("speed-up:    %8.2fx on %d threads"):format(inline_ms / pool_ms, threads))
