-- Files as the specs and the task files use them: release and "started" files,
-- logs. Plain Lua with nothing from busted, so that task files running in worker
-- states can load it too (they run with the repo root as cwd):
--
--   local exists = dofile("spec/support/files.lua").exists
--
-- Specs get these functions through spec/support/helpers.lua.
local files = {}

function files.exists(path)
  local f = io.open(path, "r")
  if f then
    f:close()
    return true
  end
  return false
end

-- A fresh path in the temp directory, with no file behind it yet.
function files.tmpname()
  local path = os.tmpname()
  os.remove(path)
  return path
end

-- Creates the file, or empties it.
function files.touch(path)
  local f = assert(io.open(path, "w"))
  f:close()
end

-- The file's lines; none if there is no such file.
function files.lines(path)
  local out = {}
  local f = io.open(path, "r")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

return files
