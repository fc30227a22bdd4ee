-- The Mandelbrot example's workers (examples/mandelbrot.lua): the escape
-- count of each pixel of rows [y0, y1), one byte a pixel, written either
-- straight into a shared buffer or into a block copied back as a string.
local ffi = require "ffi"

local function rows(out, t)  -- out: uint8_t * at row y0
  local w, h, maxiter = t.width, t.height, t.iterations
  local i = 0
  for y = t.y0, t.y1 - 1 do
    local ci = 2.4 * y / h - 1.2
    for x = 0, w - 1 do
      local cr = 3.2 * x / w - 2.2
      local zr, zi, n = 0.0, 0.0, 0
      while n < maxiter and zr * zr + zi * zi <= 4.0 do
        zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
        n = n + 1
      end
      out[i] = n
      i = i + 1
    end
  end
end

local M = {}

-- Into the shared image: no copy back, the task returns nothing.
function M.shared(t)
  rows(ffi.cast("uint8_t *", t.image:ptr()) + t.y0 * t.width, t)
end

-- Into a block of its own, returned as a string the host copies in.
function M.copy(t)
  local n = (t.y1 - t.y0) * t.width
  local block = ffi.new("uint8_t[?]", n)
  rows(block, t)
  return ffi.string(block, n)
end

return M
