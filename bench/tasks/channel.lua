-- The channel bench's two sides (bench/luapool_bench.lua): ping-pong and
-- producer -> consumer, between two workers.
local ffi = require "ffi"
pcall(ffi.cdef, [[
  typedef struct { long tv_sec; long tv_nsec; } chbench_timespec;
  int clock_gettime(int clk, chbench_timespec *ts);
]])
local ts = ffi.new "chbench_timespec"
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local M = {}

-- Sends back what comes in until it gets false.
function M.pong(t)
  while true do
    local v = t.ping:pop()
    t.pong:push(v)
    if v == false then return true end
  end
end

-- n timed round trips after `warm` untimed ones; returns the sorted times in us.
function M.ping(t)
  for i = 1, t.warm do t.ping:push(i); t.pong:pop() end
  local us = {}
  for i = 1, t.n do
    local s = now_us()
    t.ping:push(i)
    t.pong:pop()
    us[i] = now_us() - s
  end
  t.ping:push(false)
  t.pong:pop()
  table.sort(us)
  return us
end

function M.produce(t)
  local ch = t.ch
  for i = 1, t.n do ch:push(i) end
  ch:close()
  return true
end

function M.consume(t)
  local ch, n = t.ch, 0
  while ch:pop() ~= nil do n = n + 1 end
  return n
end

return M
