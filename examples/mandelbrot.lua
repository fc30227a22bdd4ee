-- A 2000x2000 Mandelbrot set under LuaJIT's FFI, computed in bands of rows
-- by a pool, twice: workers writing straight into one shared buffer
-- (luapool.buffer), and workers returning their band as a string that the
-- host copies into its image (what one had to do before shared buffers).
-- Prints both times and the speed-up; writes a PGM image when given a path.
-- Fewer iterations make the work lighter, and the copy a larger share of it.
--   luajit examples/mandelbrot.lua [size] [bands] [iterations] [out.pgm]
local ffi = require "ffi"
local luapool = require "luapool"
local now = require("luapool.core").now  -- a monotonic clock in ms

local size = tonumber(arg and arg[1]) or 2000
local nbands = tonumber(arg and arg[2]) or 64
local iterations = math.min(255, tonumber(arg and arg[3]) or 255)
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local taskfile = dir .. "/mandelbrot_task.lua"

local threads = luapool.cpus()
local pool = luapool.new { filename = taskfile, minThreads = threads, maxThreads = threads }

local function bands(image)
  local list, step = {}, math.ceil(size / nbands)
  for y0 = 0, size - 1, step do
    list[#list + 1] = { image = image, width = size, height = size, y0 = y0,
                        y1 = math.min(y0 + step, size), iterations = iterations }
  end
  return list
end

-- Shared: every band lands in place; nothing comes back.
local function run_shared()
  local image = luapool.buffer(size * size)
  local t0 = now()
  pool:map(bands(image), { name = "shared" })
  return now() - t0, image
end

-- Copy-back: each band comes back as a string and is copied into the image.
local function run_copy()
  local image = ffi.new("uint8_t[?]", size * size)
  local t0 = now()
  local list = bands(nil)
  for i, s in ipairs(pool:map(list, { name = "copy" })) do
    ffi.copy(image + list[i].y0 * size, s, #s)
  end
  return now() - t0, ffi.string(image, size * size)
end

run_shared()  -- warm up: every worker has loaded the task file and compiled it
run_copy()
local best_shared, best_copy, shared, copied = math.huge, math.huge
for _ = 1, 3 do  -- best of three each, interleaved: the machine may be busy
  local ms, img = run_shared()
  if ms < best_shared then best_shared, shared = ms, img end
  ms, img = run_copy()
  if ms < best_copy then best_copy, copied = ms, img end
end
pool:destroy()

assert(shared:read() == copied, "the two images differ")
print(("%dx%d Mandelbrot, %d iterations at most, %d bands, %d workers (best of 3)"):format(
  size, size, iterations, nbands, threads))
print(("  shared buffer: %8.1f ms"):format(best_shared))
print(("  copy-back:     %8.1f ms"):format(best_copy))
print(("  speed-up:      %8.2fx"):format(best_copy / best_shared))

local out = arg and arg[4]
if out then
  local f = assert(io.open(out, "wb"))
  f:write(("P5\n%d %d\n255\n"):format(size, size), shared:read())
  f:close()
  print("wrote " .. out)
end
