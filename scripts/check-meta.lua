-- Checks lua/luapool/meta.lua (the lua-language-server annotations) against
-- the luapool that `require` finds: every public name the code has is
-- annotated, and every annotated name exists. Run by scripts/test-rock.sh
-- with an installed rock: `lua check-meta.lua META_FILE [API_DOC]`; with
-- API_DOC (docs/API.md), also that the reference names them. Exits 1 on drift.
local meta_file = assert(arg[1], "usage: check-meta.lua META_FILE [API_DOC]")
local luapool = require "luapool"

local problems = {}
local function problem(fmt, ...) problems[#problems + 1] = fmt:format(...) end

-- The file must be Lua, and a meta file: `---@meta` first, known tags only.
local known_tags = {
  meta = true, class = true, field = true, param = true, ["return"] = true,
  alias = true, type = true, overload = true, nodiscard = true, enum = true,
  generic = true, deprecated = true, see = true, vararg = true, async = true,
  cast = true, operator = true, private = true, protected = true, package = true,
  diagnostic = true, module = true, version = true, source = true,
}
local chunk, err = loadfile(meta_file)
if not chunk then problem("%s", err) end
local f = assert(io.open(meta_file))
local text = f:read("*a")
f:close()
if not text:match("^%-%-%-@meta") then problem("%s does not start with ---@meta", meta_file) end

-- What it annotates: per class, its fields and its functions.
local classes, var_class, current = {}, {}, nil
local n = 0
for line in (text .. "\n"):gmatch("(.-)\n") do
  n = n + 1
  local tag = line:match("^%-%-%-@(%w+)")
  if tag and not known_tags[tag] then problem("line %d: unknown tag @%s", n, tag) end
  local class = line:match("^%-%-%-@class%s+%b()%s*([%w_.]+)") or line:match("^%-%-%-@class%s+([%w_.]+)")
  if class then
    current = class
    classes[class] = classes[class] or {}
  end
  local field = line:match("^%-%-%-@field%s+([%w_]+)")
  if field and current then classes[current][field] = "field" end
  local var = line:match("^local%s+([%w_]+)%s*=%s*{}")
  if var and current then var_class[var] = current end
  local owner, name = line:match("^function%s+([%w_]+)[:.]([%w_]+)%(")
  if owner then
    local c = var_class[owner]
    if c then classes[c][name] = "function" else problem("line %d: %s is no class", n, owner) end
  end
  if not line:match("^%-%-%-") and not line:match("^%s*$") then
    if not var and not owner then current = nil end
  end
end

-- Compares the public names of a live object with a class.
local function public(k)
  return type(k) == "string" and (k:sub(1, 1) ~= "_" or k == "_VERSION")
end
local function check(class, object, extra)
  local c = classes[class]
  if not c then return problem("no ---@class %s", class) end
  local seen = {}
  local function add(k, v)
    if public(k) and not seen[k] then
      seen[k] = true
      if not c[k] then problem("%s.%s is in the code but not annotated", class, k)
      elseif c[k] == "function" and type(v) ~= "function" then
        problem("%s.%s is annotated as a function but is a %s", class, k, type(v))
      end
    end
  end
  for k, v in pairs(object) do add(k, v) end
  local mt = getmetatable(object)
  if mt and type(mt.__index) == "table" then
    for k, v in pairs(mt.__index) do add(k, v) end
  end
  for k in pairs(extra or {}) do add(k, object[k]) end
  for k in pairs(c) do
    if object[k] == nil and not (extra and extra[k] == false) then
      problem("%s.%s is annotated but the code has no such %s", class, k, c[k])
    end
  end
end

-- Each class against a live object of it.
check("luapool", luapool, { workerId = false, workerData = false })
local pool = luapool.new { handler = function(x) return x end, minThreads = 1, maxThreads = 1 }
local fields = {}
for k, v in pairs(classes["luapool.Pool"] or {}) do if v == "field" then fields[k] = true end end
check("luapool.Pool", pool, fields)
local task = pool:run(1)
task:get()
check("luapool.Task", task)
check("luapool.ThreadInfo", pool.threads[1])
check("luapool.Stats", pool.runTime)
for k in pairs(pool.options) do
  if not (classes["luapool.Options"] or {})[k] then
    problem("luapool.Options.%s is in pool.options but not annotated", k)
  end
end
local ctl = luapool.AbortController()
check("luapool.AbortController", ctl)
check("luapool.AbortSignal", ctl.signal, { reason = false })  -- set by abort()
local ok, e = pcall(pool.run, pool, nil, { handler = function() error("x", 0) end })
e = ok and select(2, pcall(e.get, e))
for k in pairs(e or {}) do
  if not (classes["luapool.Error"] or {})[k] then problem("luapool.Error.%s is not annotated", k) end
end
-- the worker's view: its names, as a worker sees them
local view = pool:run(nil, { handler = function()
  local names = {}
  for k, v in pairs(require "luapool") do names[k] = type(v) end
  return names
end }):get()
for k, ty in pairs(view) do
  local c = classes["luapool.WorkerView"] or {}
  if not c[k] then problem("luapool.WorkerView.%s is in the worker view but not annotated", k)
  elseif (c[k] == "function") ~= (ty == "function") then problem("luapool.WorkerView.%s: %s", k, ty) end
end
for k in pairs(classes["luapool.WorkerView"] or {}) do
  if view[k] == nil and k ~= "workerData" then
    problem("luapool.WorkerView.%s is annotated but workers have no such name", k)
  end
end
pool:destroy()

-- The reference names every annotated name, in a code span.
local doc_file = arg[2]
if doc_file then
  local d = assert(io.open(doc_file))
  local doc = d:read("*a")
  d:close()
  local named = {}  -- every name in code: fenced blocks, then `spans`
  local function add(code)
    for word in code:gmatch("[%a_][%w_]*") do named[word] = true end
  end
  for block in doc:gmatch("```(.-)```") do add(block) end
  for span in doc:gsub("```.-```", ""):gmatch("`([^`]+)`") do add(span) end
  for class, members in pairs(classes) do
    for k in pairs(members) do
      if not named[k] then problem("%s.%s is annotated but %s does not name it", class, k, doc_file) end
    end
  end
end

if #problems > 0 then
  io.stderr:write(meta_file, " is out of date:\n  ", table.concat(problems, "\n  "), "\n")
  os.exit(1)
end
local count = 0
for _ in pairs(classes) do count = count + 1 end
print(("meta: %d classes match the code"):format(count))
