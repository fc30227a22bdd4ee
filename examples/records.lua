-- Records there and back: 200k records split into a slice per worker; each
-- worker adds a hash to every record of its slice and returns the slice. A
-- list of 256 values or more goes between threads in 64 KiB parts, read while
-- it is written, both ways. Prints the pool's time, copies included, against
-- the same work inline in this state. With little work a record (a few
-- hundred rounds, a couple of microseconds) the copies cost as much as the
-- work saved: then the records are better made in the workers themselves.
--   luajit examples/records.lua [records] [rounds]
local luapool = require "luapool"
local now = luapool.now  -- a monotonic clock in ms

local n = tonumber(arg and arg[1]) or 200000
local rounds = tonumber(arg and arg[2]) or 1000
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local hash_slice = dofile(dir .. "/records_task.lua")
local threads = luapool.cpus()

local function records(from, to)
  local list = {}
  for i = from, to do list[#list + 1] = { id = i, name = "item" .. i, tags = { "a", "b" } } end
  return list
end

local pool = luapool.new { filename = dir .. "/records_task.lua", minThreads = threads,
                           maxThreads = threads }
local warm = records(1, 10)
warm.rounds = 1
pool:run(warm):get()  -- the pool is up

local slices, step = {}, math.ceil(n / threads)
for w = 1, threads do
  slices[w] = records((w - 1) * step + 1, math.min(w * step, n))
  slices[w].rounds = rounds
end

local s = now()
local tasks = {}
for w = 1, threads do tasks[w] = pool:run(slices[w]) end
local back = {}
for w = 1, threads do back[w] = tasks[w]:get() end
local t_pool = now() - s

s = now()
for w = 1, threads do hash_slice(slices[w]) end  -- in place, here
local t_inline = now() - s

for w = 1, threads do
  local a, b = back[w], slices[w]
  assert(#a == #b and a[#a].hash == b[#b].hash and a[1].name == b[1].name, "results differ")
end
print(string.format("%d records, %d rounds each, %d workers: pool %.0f ms (copies there and "
  .. "back included), inline %.0f ms", n, rounds, threads, t_pool, t_inline))
pool:destroy()
