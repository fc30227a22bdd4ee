-- The cli bench (issue 8): one side of it, over a generated file of JSON lines
-- (bench/README.md). Prints identity_lines_per_s and cpu_lines_per_s:
--
--   luajit bench/cli_bench.lua cli side=luapool|inline|parallel lines=1000000
--
-- luapool: bin/luapool -j 2 over the file; inline: bench/tasks/jsonl_inline.lua,
-- the same handler in a single-threaded luajit + cjson loop; parallel: GNU
-- parallel --pipe -k -j 2 driving that loop. Output goes to /dev/null.
local dir = arg[0]:match("^(.*)/") or "."
local b = dofile(dir .. "/common.lua")
local side, lines = b.opt.side or "luapool", b.num("lines", 1000000)
local LUAJIT = "luajit"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The input, made once per size: records like the payload bench's.
local function input()
  local path = (os.getenv("TMPDIR") or "/tmp") .. ("/luapool-bench-cli-%d.jsonl"):format(lines)
  local f = io.open(path, "r")
  if f then f:close() return path end
  local tmp = path .. ".part"
  f = assert(io.open(tmp, "w"))
  local buf = {}
  for i = 1, lines do
    buf[#buf + 1] = ('{"id":%d,"name":"item%d","tags":["a","b"],"v":%d.5}\n'):format(i, i, i % 997)
    if #buf == 10000 then f:write(table.concat(buf)) buf = {} end
  end
  f:write(table.concat(buf))
  f:close()
  assert(os.rename(tmp, path))
  return path
end

local function command(task, file)
  local inline = LUAJIT .. " " .. q(dir .. "/tasks/jsonl_inline.lua") .. " " .. q(task)
  if side == "luapool" then
    return LUAJIT .. " " .. q(dir .. "/../bin/luapool") .. " -j 2 --no-progress " .. q(task) .. " " .. q(file)
  elseif side == "inline" then
    return inline .. " " .. q(file)
  elseif side == "parallel" then
    return "parallel --will-cite --pipe -k -j 2 " .. inline .. " <" .. q(file)
  end
  error("unknown side " .. tostring(side))
end

local function measure(metric, task)
  local file = input()
  local cmd = command(dir .. "/tasks/" .. task, file) .. " >/dev/null"
  local t = b.now_ms()
  local r = os.execute(cmd)
  local ms = b.now_ms() - t
  if r ~= 0 and r ~= true then b.na(metric, "failed: " .. cmd) return end
  b.emit(metric, "lines/s", lines / ms * 1000)
end

b.main(side, "bench/cli_bench.lua", {
  cli = function()
    if side == "parallel" and os.execute("command -v parallel >/dev/null 2>&1") ~= 0 then
      b.na("identity_lines_per_s", "GNU parallel is not installed")
      b.na("cpu_lines_per_s", "GNU parallel is not installed")
      return
    end
    measure("identity_lines_per_s", "jsonl_identity.lua")
    measure("cpu_lines_per_s", "jsonl_cpu.lua")
  end,
})
