-- luapool.chunk: the worker side of pool:imap and of the luapool command, a
-- task file. A task carries a chunk of inputs and names the user's handler;
-- this file calls the handler on each input, so a cheap handler pays one
-- round trip per chunk rather than one per input.
--
--   task = { n = count, h = function or nil, f = filename, m = name, [1..n] = inputs }
--   default(task) -> results[1..n], errors or nil   (errors[i] = { message, value, traceback, workerId })
--   jsonl(task)   -> output, nerrors, nil, k        (task[1]: lines, each ending in "\n";
--                    task.pre: nil or the start of the first line; task.line: the
--                    number of the first; output: one line per line; k: the first
--                    line that failed)
--
-- Whatever prevents running the chunk at all (a task file that cannot load)
-- is returned as a third value { code, message }, the same for every input.

local worker = require "luapool"
local files = {}  -- task files loaded here when the worker has not loaded them

-- The worker keeps the task files it loaded in its registry; a file the
-- pool names is loaded there before the first task, and its top level must
-- not run twice.
local function load_file(filename)
  local reg = debug.getregistry()["luapool.files"]
  local cache = type(reg) == "table" and reg or files
  local mod = cache[filename]
  if mod ~= nil then return mod end
  local chunk, err = loadfile(filename)
  if not chunk then
    return nil, ('Failed to load task file "%s": %s'):format(filename, err)
  end
  local ok, res = pcall(chunk)
  if not ok then
    return nil, ('Failed to run task file "%s": %s'):format(filename, tostring(res))
  end
  if type(res) ~= "table" and type(res) ~= "function" then
    return nil, ('Task file "%s" must return a function or a table of functions, not %s')
      :format(filename, type(res))
  end
  cache[filename] = res
  return res
end

-- The handler a task names: its function, or the file's function of that name.
local function handler_of(task)
  if task.h then return task.h end
  local mod, err = load_file(task.f)
  if not mod then return nil, err end
  local name = task.m or "default"
  local fn = mod
  if type(mod) == "table" then fn = mod[name]
  elseif name ~= "default" then fn = nil end
  if type(fn) ~= "function" then
    return nil, ('No handler function "%s" exported from "%s"'):format(name, task.f)
  end
  return fn
end

-- Calls fn(input) protected; on error returns false, the raised value and
-- the worker's traceback. xpcall passes arguments on LuaJIT and 5.2+ only.
local traceback
local function on_error(e)
  traceback = debug.traceback("", 2):gsub("^\n", "")
  return e
end
-- (Two functions: one that makes a closure cannot be compiled by LuaJIT.)
local function call(fn, input) return xpcall(fn, on_error, input) end
if not select(2, xpcall(function(a) return a end, on_error, true)) then
  call = function(fn, input) return xpcall(function() return fn(input) end, on_error) end
end

-- The message of a raised value, as the worker's own tasks make it.
local function message_of(e)
  local t = type(e)
  if t == "string" or t == "number" then return tostring(e) end
  if t == "table" and type(e.message) == "string" then return e.message end
  return "(error object is a " .. t .. " value)"
end

local runner = {}

function runner.default(task)
  local fn, err = handler_of(task)
  if not fn then return nil, nil, { code = "load_error", message = err } end
  local results, errors = {}, nil
  for i = 1, task.n do
    local ok, v = call(fn, task[i])
    if ok then
      results[i] = v
    else
      errors = errors or {}
      errors[i] = { message_of(v), v, traceback, worker.workerId }
    end
  end
  return results, errors
end

-- The luapool command: each input is a line of JSON; the output is one
-- JSON line per input, or {"error":{...}} in its place.
local cjson_ok, cjson = pcall(require, "cjson")
if cjson_ok then
  cjson = cjson.new()  -- settings of our own, whatever the task file does to cjson
  cjson.encode_sparse_array(true)
end

-- {"error":{"code":...,"message":...,"line":N}}, its keys in this order.
local function error_line(code, message, line)
  return '{"error":{"code":' .. cjson.encode(code) .. ',"message":' .. cjson.encode(message)
    .. ',"line":' .. ("%d"):format(line) .. '}}'
end
runner.error_line = error_line

-- The lines run in one protected call, which an error ends; the next call
-- goes on after the line that failed (a pcall per line costs more than the
-- decoding of a short one).
function runner.jsonl(task)
  if not cjson_ok then
    return nil, nil, { code = "load_error", message = "lua-cjson is not installed: " .. tostring(cjson) }
  end
  local fn, err = handler_of(task)
  if not fn then return nil, nil, { code = "load_error", message = err } end
  local decode, encode, find, sub = cjson.decode, cjson.encode, string.find, string.sub
  local lines, pre, pos, i, stage = task[1], task.pre, 1, 0, nil
  local out, nerr, first_err = {}, 0, nil
  local function run()
    while true do
      stage = "bad_json"
      local nl = find(lines, "\n", pos, true)
      if not nl then return end
      local line = sub(lines, pos, nl - 1)
      if pre then line, pre = pre .. line, nil end
      pos, i = nl + 1, i + 1
      local value = decode(line)
      stage = "task_error"
      local v = fn(value)
      stage = "bad_result"
      out[i] = encode(v)
    end
  end
  while true do
    local ok, e = pcall(run)
    if ok then break end
    out[i] = error_line(stage, message_of(e), task.line + i - 1)
    nerr = nerr + 1
    first_err = first_err or i
  end
  out[i + 1] = ""
  out = table.concat(out, "\n")
  -- cjson writes "/" as "\/": valid, but not what anyone wrote (every "/"
  -- it writes is escaped, so a "\/" pair is always one escape)
  if out:find("\\/", 1, true) then out = out:gsub("\\/", "/") end
  return out, nerr, nil, first_err
end

-- Loads the task file and finds the handler, for the command's check
-- before it reads any input.
function runner.check(task)
  local _, err = handler_of(task)
  return err
end

return runner
