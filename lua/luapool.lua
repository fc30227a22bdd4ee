-- luapool: run Lua code in parallel on a pool of worker threads.
--
-- The C core (luapool.core) owns the threads, the queue and the value codec;
-- this file is the pool's life as Lua sees it: options, Task objects, errors,
-- events, and the loop that settles tasks on the main thread.
local core = require "luapool.core"

local unpack = table.unpack or unpack
local now = core.now

local luapool = {
  isMainThread = true,
  isWorkerThread = false,
  workerId = nil,
  workerData = nil,
  _VERSION = "0.1.0",
}

---------------------------------------------------------------------------
-- Errors: tables with code and message, and where they apply value,
-- traceback and workerId.

local Error = {}
Error.__index = Error
Error.__tostring = function(e)
  local msg = tostring(e.message):gsub("\n.*", "")
  return "luapool " .. tostring(e.code) .. ": " .. msg
end

local function new_error(code, message, value, traceback, workerId)
  return setmetatable({ code = code, message = message, value = value,
                        traceback = traceback, workerId = workerId }, Error)
end

local function raise(code, message)
  error(new_error(code, message), 3)
end

function luapool.isError(v)
  return getmetatable(v) == Error
end

---------------------------------------------------------------------------
-- Options

local cpus = core.cpus()

-- The number of cores this process may run on (an addition to Tinypool's API,
-- like Node's os.availableParallelism()).
function luapool.cpus() return cpus end

local function is_int(v, min)
  return type(v) == "number" and v == math.floor(v) and v >= min
end

local function check_options(o)
  if o == nil then o = {} end
  if type(o) ~= "table" then raise("invalid_option", "options must be a table") end
  local known = {
    filename = true, handler = true, name = true, minThreads = true,
    maxThreads = true, idleTimeout = true, maxQueue = true, isolateWorkers = true,
    terminateTimeout = true, maxMemoryLimitBeforeRecycle = true,
    resourceLimits = true, runtime = true, env = true, workerData = true,
    teardown = true,
  }
  for k in pairs(o) do
    if not known[k] then raise("invalid_option", "unknown option '" .. tostring(k) .. "'") end
  end
  local function bad(name, what)
    raise("invalid_option", "options." .. name .. " must be " .. what)
  end
  if o.filename ~= nil and type(o.filename) ~= "string" then bad("filename", "a string or nil") end
  if o.handler ~= nil and type(o.handler) ~= "function" then bad("handler", "a function or nil") end
  if o.name ~= nil and type(o.name) ~= "string" then bad("name", "a string or nil") end
  if o.minThreads ~= nil and not is_int(o.minThreads, 0) then
    bad("minThreads", "a non-negative integer")
  end
  if o.maxThreads ~= nil and not is_int(o.maxThreads, 1) then
    bad("maxThreads", "a positive integer")
  end
  if o.idleTimeout ~= nil and not (type(o.idleTimeout) == "number" and o.idleTimeout >= 0) then
    bad("idleTimeout", "a non-negative number of milliseconds")
  end
  if o.maxQueue ~= nil and o.maxQueue ~= "auto" and
     not (is_int(o.maxQueue, 0) or o.maxQueue == math.huge) then
    bad("maxQueue", 'a non-negative integer or "auto"')
  end
  if o.isolateWorkers ~= nil and type(o.isolateWorkers) ~= "boolean" then
    bad("isolateWorkers", "a boolean")
  end
  if o.runtime ~= nil and o.runtime ~= "threads" and o.runtime ~= "process" then
    bad("runtime", '"threads" or "process"')
  end
  -- Parts of the contract that this version does not implement yet say so
  -- rather than being silently ignored.
  local later = { isolateWorkers = o.isolateWorkers == true,
                  terminateTimeout = o.terminateTimeout ~= nil,
                  maxMemoryLimitBeforeRecycle = o.maxMemoryLimitBeforeRecycle ~= nil,
                  resourceLimits = o.resourceLimits ~= nil,
                  runtime = o.runtime == "process", env = o.env ~= nil,
                  teardown = o.teardown ~= nil }
  for k, v in pairs(later) do
    if v then raise("invalid_option", "options." .. k .. " is not supported yet") end
  end

  -- Tinypool's rules: defaults from the core count; giving only one of
  -- min and max moves the other; giving both in conflict is an error.
  local r = {}
  for k, v in pairs(o) do r[k] = v end
  r.name = o.name or "default"
  r.idleTimeout = o.idleTimeout or 0
  r.isolateWorkers = o.isolateWorkers or false
  r.runtime = o.runtime or "threads"
  r.minThreads = o.minThreads or math.max(1, math.floor(cpus / 2))
  r.maxThreads = o.maxThreads or cpus
  if o.minThreads ~= nil and o.maxThreads ~= nil then
    if o.minThreads > o.maxThreads then
      raise("invalid_option", "options.minThreads and options.maxThreads must not conflict")
    end
  elseif o.maxThreads ~= nil and r.minThreads >= o.maxThreads then
    r.minThreads = o.maxThreads
  elseif o.minThreads ~= nil and r.maxThreads <= o.minThreads then
    r.maxThreads = o.minThreads
  end
  if o.maxQueue == "auto" then
    r.maxQueue = r.maxThreads * r.maxThreads
  elseif o.maxQueue == nil then
    r.maxQueue = math.huge
  end
  return r
end

---------------------------------------------------------------------------
-- Tasks

local Task = {}
Task.__index = Task

function Task:status()
  if not self._state then
    local s = self._pool._core and self._pool._core:status(self._p)
    if s ~= "done" then return s end
    self._pool:poll()
    return self._state or "running"
  end
  return self._state
end

function Task:wait(timeout)
  if timeout ~= nil and type(timeout) ~= "number" then
    error("task:wait: timeout must be a number of milliseconds", 2)
  end
  return self._pool:_await(self, timeout)
end

function Task:get()
  if not self._state then self._pool:_await(self) end
  if self._state == "fulfilled" then return unpack(self._res, 1, self._n) end
  error(self._err, 2)
end

function Task:cancel()
  if self._state then return false end
  local pool = self._pool
  local r = pool._core:stop(self._p)
  if r == "queued" then
    pool:_settle_error(self, new_error("cancelled", "The task has been cancelled"))
    return true
  end
  return false
end

function Task:onDone(fn)
  if type(fn) ~= "function" then error("task:onDone: expects a function", 2) end
  if self._state then
    local later = self._pool._later
    later[#later + 1] = function() self:_call(fn) end
  else
    local cbs = self._cbs
    if not cbs then self._cbs = { fn } else cbs[#cbs + 1] = fn end
  end
  return self
end

function Task:_call(fn)
  if self._state == "fulfilled" then fn(true, unpack(self._res, 1, self._n))
  else fn(false, self._err) end
end

function Task:_fire()
  local cbs = self._cbs
  if cbs then
    self._cbs = nil
    for i = 1, #cbs do self:_call(cbs[i]) end
  end
end

Task.__tostring = function(t) return "luapool.Task (" .. t:status() .. ")" end

---------------------------------------------------------------------------
-- Pools

local Pool = {}
local methods = {}
local fields = {}

local events = { message = true, drain = true, error = true,
                 workerCreate = true, workerDestroy = true }

local function emit(self, name, ...)
  local list = self._handlers[name]
  if list then
    for i = 1, #list do list[i](...) end
  end
end

-- Settles every pending task and fires callbacks queued by onDone on tasks
-- already settled, then "drain" if nothing is left.
local function after_poll(self)
  local later = self._later
  local n = #later
  if n > 0 then
    self._later = {}
    for i = 1, n do later[i]() end
  end
  if self._npending == 0 and not self._drained then
    self._drained = true
    emit(self, "drain")
  end
  return n
end

local function make_settle(self)
  local pending = self._pending
  return function(p, ok, workerId, ...)
    if ok == nil then  -- a worker event
      if p == "message" then emit(self, "message", ..., workerId)
      elseif p == "error" then
        emit(self, "error", new_error("worker_error", (...), nil, nil, workerId))
      else emit(self, p, workerId) end
      return
    end
    local task = pending[p]
    if not task then return end
    pending[p] = nil
    self._npending = self._npending - 1
    self._completed = self._completed + 1
    task._p = nil
    if ok then
      task._n, task._res = ...
      task._state = "fulfilled"
    else
      local code, message, value, traceback = ...
      task._err = new_error(code, message, value, traceback, workerId)
      task._state = "rejected"
    end
    if task._cbs then task:_fire() end
  end
end

function luapool.new(options)
  local opts = check_options(options)
  local cfg = {
    filename = opts.filename, name = opts.name, handler = opts.handler,
    minThreads = opts.minThreads, maxThreads = opts.maxThreads,
    idleTimeout = opts.idleTimeout,
    maxQueue = opts.maxQueue == math.huge and -1 or opts.maxQueue,
    workerData = opts.workerData,
    path = package.path, cpath = package.cpath,
  }
  if opts.filename then  -- a missing file or a syntax error fails here
    local f, err = loadfile(opts.filename)
    if not f then raise("load_error", err) end
  end
  local c, code, msg = core.new(cfg)
  if not c then raise(code, msg) end
  local self = {
    _core = c, _pending = {}, _npending = 0, _completed = 0, _later = {},
    _handlers = {}, _opts = opts, _created = now(), _drained = true,
  }
  for k, f in pairs(methods) do self[k] = f end
  self._settle = make_settle(self)
  return setmetatable(self, Pool)
end

Pool.__index = function(self, k)
  local f = fields[k]
  if f then return f(self) end
end
Pool.__close = function(self) self:destroy() end
Pool.__gc = function(self) self:destroy() end
Pool.__tostring = function(self)
  return "luapool.Pool (" .. (self._destroyed and "destroyed" or #self.threads .. " threads") .. ")"
end

-- Which handler a run names: 0 the pool's default, 1 a file and function
-- name, 2 a handler function.
local function resolve(self, opts)
  local o = self._opts
  if opts == nil then
    if o.filename == nil and o.handler == nil then
      raise("load_error", "filename must be provided to run() or in options object")
    end
    return 0
  end
  if type(opts) ~= "table" then raise("invalid_option", "run options must be a table") end
  for k in pairs(opts) do
    if k ~= "filename" and k ~= "name" and k ~= "handler" then
      if k == "signal" or k == "timeout" then
        raise("invalid_option", "run option '" .. k .. "' is not supported yet")
      end
      raise("invalid_option", "unknown run option '" .. tostring(k) .. "'")
    end
  end
  local filename, name, handler = opts.filename, opts.name, opts.handler
  if filename ~= nil and type(filename) ~= "string" then
    raise("invalid_option", "filename argument must be a string")
  end
  if name ~= nil and type(name) ~= "string" then
    raise("invalid_option", "name argument must be a string")
  end
  if handler ~= nil then
    if type(handler) ~= "function" then
      raise("invalid_option", "handler argument must be a function")
    end
    return 2, handler
  end
  if filename == nil and (name == nil or name == o.name) then
    if o.filename == nil and o.handler == nil then
      raise("load_error", "filename must be provided to run() or in options object")
    end
    return 0
  end
  filename = filename or o.filename
  if filename == nil then
    raise("load_error", "filename must be provided to run() or in options object")
  end
  return 1, filename, name or o.name
end

local function submit(self, value, opts, workerId)
  if self._closed then
    raise("destroyed", self._destroyed and "The pool is destroyed" or "The pool is closed")
  end
  local kind, a, b = resolve(self, opts)
  local p, code, msg = self._core:submit(kind, a, b, value, workerId)
  if not p then raise(code, msg) end
  local task = setmetatable({ _p = p, _pool = self }, Task)
  self._pending[p] = task
  self._npending = self._npending + 1
  self._drained = false
  return task
end

function methods.run(self, value, opts)
  return submit(self, value, opts)
end

function methods.runAll(self, value, opts)
  local list = {}
  for _, t in ipairs(self._core and self._core:threads() or {}) do
    list[#list + 1] = submit(self, value, opts, t.id)
  end
  return list
end

function methods._settle_error(self, task, err)
  self._pending[task._p] = nil
  self._npending = self._npending - 1
  self._completed = self._completed + 1
  task._p = nil
  task._err = err
  task._state = "rejected"
  if task._cbs then
    local later = self._later
    later[#later + 1] = function() task:_fire() end
  end
end

-- timeout (ms, an addition to the contract): wait that long at most for
-- something to settle; without it poll never blocks.
function methods.poll(self, timeout)
  if self._destroyed then return after_poll(self) end
  if timeout ~= nil and type(timeout) ~= "number" then
    error("pool:poll: timeout must be a number of milliseconds", 2)
  end
  local n = after_poll(self)
  return n + self._core:poll(timeout or 0, self._settle) + after_poll(self)
end

-- Blocks in the core until results come, settling them, until done() or
-- the timeout (ms) passes. Returns true when done() held.
local function block_until(self, done, timeout)
  local deadline = timeout and now() + timeout
  while true do
    after_poll(self)
    if done() then return true end
    if self._destroyed then return done() end
    local left = -1
    if deadline then
      left = deadline - now()
      if left <= 0 then
        self._core:poll(0, self._settle)
        after_poll(self)
        return done()
      end
    end
    self._core:poll(left, self._settle)
  end
end

function methods._await(self, task, timeout)
  if task._state then after_poll(self) return true end
  return block_until(self, function() return task._state ~= nil end, timeout)
end

function methods.wait(self, timeout)
  if timeout ~= nil and type(timeout) ~= "number" then
    error("pool:wait: timeout must be a number of milliseconds", 2)
  end
  return block_until(self, function() return self._npending == 0 end, timeout)
end

function methods.map(self, list, opts)
  if type(list) ~= "table" then error("pool:map: expects a list", 2) end
  local tasks, n = {}, #list
  for i = 1, n do
    while true do  -- with a bounded queue, wait for room instead of failing
      local ok, t = pcall(submit, self, list[i], opts)
      if ok then tasks[i] = t break end
      if not (luapool.isError(t) and t.code == "queue_full") or self._npending == 0 then
        error(t, 2)
      end
      local before = self._completed
      block_until(self, function() return self._completed > before end)
    end
  end
  local out = {}
  for i = 1, n do
    local t = tasks[i]
    if not t._state then self:_await(t) end
    if t._state == "rejected" then error(t._err, 2) end
    out[i] = t._res[1]
  end
  return out
end

function methods.on(self, event, fn)
  if not events[event] then error("pool:on: unknown event '" .. tostring(event) .. "'", 2) end
  if type(fn) ~= "function" then error("pool:on: expects a function", 2) end
  local list = self._handlers[event]
  if not list then list = {}; self._handlers[event] = list end
  list[#list + 1] = fn
  return self
end

function methods.cancelPendingTasks(self)
  local n = 0
  for p, task in pairs(self._pending) do
    if self._core:stop(p, true) == "queued" then
      self:_settle_error(task, new_error("cancelled", "The task has been cancelled"))
      n = n + 1
    end
  end
  return n
end

function methods.close(self)
  if self._destroyed then return end
  self._closed = true
  self:wait()
  self:destroy()
end

function methods.destroy(self)
  if self._destroyed then return end
  self._destroyed, self._closed = true, true
  local c = self._core
  for p, task in pairs(self._pending) do
    self:_settle_error(task, new_error("terminated", "Terminating worker thread"))
  end
  self._pending = {}
  c:destroy()
  self._core = nil
end

function methods.pollfd(self)
  if self._destroyed then raise("destroyed", "The pool is destroyed") end
  return self._core:pollfd()
end
function methods.events() return "r" end
function methods.timeout() return nil end

function fields.queueSize(self) return self._core and self._core:queueSize() or 0 end
function fields.completed(self) return self._completed end
function fields.duration(self) return now() - self._created end
function fields.threads(self) return self._core and self._core:threads() or {} end
function fields.options(self)
  local copy = {}
  for k, v in pairs(self._opts) do copy[k] = v end
  return copy
end
local function stats(self, which)
  local s = self._core and self._core:stats(which)
  if not s then
    return { min = 0, max = 0, mean = 0, stddev = 0, p50 = 0, p90 = 0, p99 = 0 }
  end
  s.count = nil
  return s
end
function fields.runTime(self) return stats(self, "run") end
function fields.waitTime(self) return stats(self, "wait") end
function fields.utilization(self)
  if not self._core then return 0 end
  local s = self._core:stats("run")
  local capacity = (now() - self._created) * self._opts.maxThreads
  return capacity > 0 and math.min(1, s.mean * s.count / capacity) or 0
end
function fields.needsDrain(self)
  if not self._core then return false end
  if self._core:queueSize() > 0 then return true end
  local threads = self._core:threads()
  if #threads < self._opts.maxThreads then return false end
  for i = 1, #threads do
    if not threads[i].busy then return false end
  end
  return true
end

return luapool
