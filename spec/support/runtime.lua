-- Loaded by busted before the specs (`--helper`): LUAPOOL_TEST_RUNTIME=process
-- makes the process runtime the default of every pool the specs create, so
-- the whole suite runs once per runtime. Specs that hold only for threads
-- ask helpers.thread_only().
local runtime = os.getenv("LUAPOOL_TEST_RUNTIME")
if runtime and runtime ~= "" then
  local luapool = require "luapool"
  local new = luapool.new
  luapool.new = function(options)
    if type(options) == "table" and options.runtime == nil then
      local o = {}
      for k, v in pairs(options) do o[k] = v end
      o.runtime = runtime
      options = o
    elseif options == nil then
      options = { runtime = runtime }
    end
    return new(options)
  end
end
