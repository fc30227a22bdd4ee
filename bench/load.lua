-- A load the benchmark driver puts beside a measurement (bench/run.lua, benches loaded
-- and contended): one process that keeps one core busy.
--
--   luajit bench/load.lua busy seconds=S parent=PID
--
-- Prints "ready" once running, then spins until the driver kills it, its parent is no
-- longer PID (the driver died), or S seconds have passed: it never outlives a bench.
local dir = arg[0]:match "^(.*)/" or "."
local b = dofile(dir .. "/common.lua")

local function busy()
  local alive = b.load_guard()
  io.stdout:write "ready\n"
  local x = 0
  repeat
    for i = 1, 1000000 do x = x + i end -- about 1 ms between checks
  until not alive()
  return x
end

if b.bench ~= "busy" then
  io.stderr:write "usage: luajit bench/load.lua busy seconds=S parent=PID\n"
  os.exit(2)
end
busy()
