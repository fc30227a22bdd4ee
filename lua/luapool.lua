-- luapool: run Lua code in parallel on a pool of worker threads.
--
-- The C core (luapool.core) owns the threads, the queue and the value codec;
-- this file is the pool's life as Lua sees it: options, Task objects, errors,
-- events, and the loop that settles tasks on the main thread.
local core = require "luapool.core"

local unpack = table.unpack or unpack
local now = core.now

local luapool = {
  now = now,  -- a monotonic clock, in ms
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
-- One line with the code and message; the worker's traceback, when there
-- is one, on the lines after (what an uncaught error then shows).
Error.__tostring = function(e)
  local msg = tostring(e.message):gsub("\n.*", "")
  local s = "luapool " .. tostring(e.code) .. ": " .. msg
  if type(e.traceback) == "string" and e.traceback ~= "" then
    s = s .. "\n" .. e.traceback:gsub("^\n+", "")
  end
  return s
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
luapool._error = new_error  -- for luapool.imap
core.error_metatable(Error)  -- errors of channels and buffers, raised in C

-- Channels and shared buffers (C objects shared by reference with thread
-- workers, which have the same two functions in their `luapool`).
luapool.channel = core.channel
luapool.buffer = core.buffer

-- A bad argument to a function of the API: `fname: what was wrong`.
local function bad_argument(fname, what)
  error(new_error("invalid_argument", fname .. ": " .. what), 3)
end

local function describe_value(v)
  return type(v) == "string" and ("%q"):format(v) or tostring(v)
end

-- nil, or a duration in ms: non-negative, math.huge for no limit (NaN fails).
local function check_duration(fname, ms)
  if ms ~= nil and not (type(ms) == "number" and ms >= 0) then
    bad_argument(fname, "timeout must be a non-negative number of milliseconds " ..
                 "(math.huge: no limit), not " .. describe_value(ms))
  end
end

local function check_function(fname, fn)
  if type(fn) ~= "function" then
    bad_argument(fname, "expects a function, not " .. describe_value(fn))
  end
end

---------------------------------------------------------------------------
-- Options

local cpus = core.cpus()

-- The number of cores this process may run on (an addition to Tinypool's API,
-- like Node's os.availableParallelism()).
function luapool.cpus() return cpus end

-- Every option: its kind and, for numbers, its range. One place checks them
-- all, and a message names the option and what it takes.
local MAX_THREADS = 4096
local DEFAULT_LOAD_MS = 60000  -- a task file's top level, at most (loadTimeout)
local MAX_BYTES = 2 ^ 53      -- integers past this are not exact as numbers
local MIN_HEAP = 256 * 1024   -- a fresh worker state holds 22-37 KiB; room to run tasks
local option_rules = {
  filename = { kind = "string" },
  handler = { kind = "function" },
  name = { kind = "string" },
  teardown = { kind = "string" },
  minThreads = { kind = "integer", min = 0, max = MAX_THREADS },
  maxThreads = { kind = "integer", min = 1, max = MAX_THREADS },
  idleTimeout = { kind = "duration" },
  terminateTimeout = { kind = "duration" },
  loadTimeout = { kind = "duration" },
  closeTimeout = { kind = "duration" },
  maxQueue = { kind = "integer", min = 0, max = MAX_BYTES, huge = true, auto = true },
  isolateWorkers = { kind = "boolean" },
  maxMemoryLimitBeforeRecycle = { kind = "integer", min = 1, max = MAX_BYTES, unit = "bytes" },
  resourceLimits = { kind = "table", fields = {
    maxHeapBytes = { kind = "integer", min = MIN_HEAP, max = MAX_BYTES, unit = "bytes" },
  } },
  runtime = { kind = "enum", values = { threads = "threads", process = "process",
                                        worker_threads = "threads", child_process = "process" } },
  env = { kind = "table" },
  workerData = { kind = "any" },
}

-- What a rule takes, in words, for the message.
local function describe_rule(r)
  if r.kind == "integer" then
    local s = ("an integer from %d to %.0f"):format(r.min, r.max)
    if r.unit then s = s .. " " .. r.unit end
    if r.huge then s = s .. ", or math.huge" end
    if r.auto then s = s .. ', or "auto"' end
    return s
  elseif r.kind == "duration" then
    return "a non-negative number of milliseconds (math.huge: no limit)"
  elseif r.kind == "enum" then
    local names = {}
    for k in pairs(r.values) do names[#names + 1] = ("%q"):format(k) end
    table.sort(names)
    return "one of " .. table.concat(names, ", ")
  end
  return "a " .. r.kind
end

local function valid(r, v)
  local k = r.kind
  if k == "any" then return true end
  if k == "integer" then
    if (r.auto and v == "auto") or (r.huge and v == math.huge) then return true end
    return type(v) == "number" and v == math.floor(v) and v >= r.min and v <= r.max
  end
  if k == "duration" then return type(v) == "number" and v >= 0 end  -- NaN fails
  if k == "enum" then return r.values[v] ~= nil end
  return type(v) == k
end

local function check_fields(o, rules, prefix)
  for k, v in pairs(o) do
    local r = rules[k]
    if not r then raise("invalid_option", "unknown option '" .. prefix .. tostring(k) .. "'") end
    if not valid(r, v) then
      raise("invalid_option", ("options.%s%s must be %s, not %s"):format(prefix, k,
            describe_rule(r), type(v) == "string" and ("%q"):format(v) or tostring(v)))
    end
    if r.fields then check_fields(v, r.fields, prefix .. k .. ".") end
  end
end

local function check_options(o)
  if o == nil then o = {} end
  if type(o) ~= "table" then raise("invalid_option", "options must be a table") end
  check_fields(o, option_rules, "")
  if o.env ~= nil then
    if option_rules.runtime.values[o.runtime] ~= "process" then
      raise("invalid_option", 'options.env applies to runtime = "process" only: thread ' ..
            "workers share the host's environment")
    end
    for k, v in pairs(o.env) do
      if type(k) ~= "string" or k == "" or k:find("[=%z]") then
        raise("invalid_option", "options.env must be a table of names to string values " ..
              "(a name without '=')")
      end
      if type(v) ~= "string" and type(v) ~= "number" or tostring(v):find("%z") then
        raise("invalid_option", "options.env must be a table of names to string values " ..
              "(env." .. k .. ")")
      end
    end
  end

  -- Tinypool's rules: defaults from the core count; giving only one of
  -- min and max moves the other; giving both in conflict is an error.
  local r = {}
  for k, v in pairs(o) do r[k] = v end
  r.name = o.name or "default"
  r.idleTimeout = o.idleTimeout or 0
  r.loadTimeout = o.loadTimeout or DEFAULT_LOAD_MS
  r.isolateWorkers = o.isolateWorkers or false
  r.runtime = option_rules.runtime.values[o.runtime or "threads"]
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

local DEFAULT_TERMINATE_MS = 1000
local ABORTED = "The task has been aborted"
local TIMED_OUT = "The task has timed out"

local Signal = {}  -- AbortController().signal
Signal.__index = Signal

local Task = {}
Task.__index = Task

-- A task's fields live in its array part, by these indices: a table made
-- with them all is one allocation, which a task a microsecond long notices
-- (its submit and settle are most of the main thread's work).
local T_SLOT = 1     -- the core's name for it (nil once it left the books)
local T_POOL = 2
local T_STATE = 3    -- false, then "fulfilled" or "rejected"
local T_N = 4        -- fulfilled: how many values
local T_RES = 5      -- and they: nil for none, the value for one, else a table
local T_ERR = 6      -- rejected: the error
local T_CB = 7       -- onDone callbacks: false, a function, or a list
local T_DEADLINE = 8 -- with a timeout: when
local T_SIGNAL = 9   -- with an abort signal: it
local no = false     -- (see submit)

function Task:status()
  if not self[T_STATE] then
    local s = self[T_POOL]._core and self[T_POOL]._core:status(self[T_SLOT])
    if s ~= "done" then return s end
    -- settle what the core has finished; callbacks wait for poll, wait, get, map
    self[T_POOL]._core:poll(0, self[T_POOL]._settle)
    return self[T_STATE] or "running"
  end
  return self[T_STATE]
end

function Task:wait(timeout)
  check_duration("task:wait", timeout)
  return self[T_POOL]:_await(self, timeout)
end

function Task:get()
  if not self[T_STATE] then self[T_POOL]:_await(self) end
  if self[T_STATE] == "fulfilled" then return self:_values() end
  error(self[T_ERR], 2)
end

-- For coroutine schedulers: yields the running coroutine until the task
-- settles, then returns what get() does. Inside a cqueues controller it
-- yields through cqueues.poll on the pool (a pollable: pollfd, events,
-- timeout) and on a condition signalled whenever a task of the pool settles
-- (the fd says nothing of results another coroutine took); in another
-- coroutine it yields the pool, for the scheduler to resume once
-- pool:pollfd() is readable; outside a coroutine it waits as get() does.
function Task:await()
  local pool = self[T_POOL]
  while not self[T_STATE] do
    pool:poll()
    if self[T_STATE] then break end
    local cq = package.loaded.cqueues
    local co, main = coroutine.running()
    if cq and cq.running and cq.running() then
      local cond = pool._cq_cond
      if not cond then
        cond = require("cqueues.condition").new()
        pool._cq_cond = cond
      end
      cq.poll(pool, cond, 0.1)  -- and a bound, should a wake-up still be missed
    elseif co and not main and (not coroutine.isyieldable or coroutine.isyieldable()) then
      coroutine.yield(pool)
    else
      pool:_await(self)
    end
  end
  return self:get()
end

function Task:cancel()
  if self[T_STATE] then return false end
  return self[T_POOL]:_abort(self, "cancelled", "The task has been cancelled", "aborted", ABORTED)
end

-- Callbacks wait in the task (one needs no list) until it settles; then the
-- pool's queue of due tasks runs them, inside poll, wait, get or map.
function Task:onDone(fn)
  check_function("task:onDone", fn)
  local cb = self[T_CB]
  if not cb then self[T_CB] = fn
  elseif type(cb) == "table" then cb[#cb + 1] = fn
  else self[T_CB] = { cb, fn } end
  if self[T_STATE] and not cb then self[T_POOL]:_due(self) end
  return self
end

-- The handler's values: _n of them, packed in _res as the core hands them
-- over (nil for none, the value itself for one, a table for more).
function Task:_values()
  local n = self[T_N]
  if n == 1 then return self[T_RES] end
  if n == 0 then return end
  return unpack(self[T_RES], 1, n)
end

-- The error of a rejected task, else nil (for luapool.imap).
function Task:_failure()
  return self[T_STATE] == "rejected" and self[T_ERR] or nil
end

function Task:_call(fn)
  if self[T_STATE] == "fulfilled" then fn(true, self:_values())
  else fn(false, self[T_ERR]) end
end

-- The next callback to run, taken off the task; nil when none is left.
function Task:_next_callback()
  local cb = self[T_CB]
  if type(cb) ~= "table" then
    self[T_CB] = nil
    return cb
  end
  local fn = table.remove(cb, 1)
  if #cb == 0 then self[T_CB] = nil end
  return fn
end

Task.__tostring = function(t) return "luapool.Task (" .. t:status() .. ")" end

---------------------------------------------------------------------------
-- Abort signals

-- ctl:abort() stops every task run with ctl.signal: queued ones are taken
-- off the queue, running ones interrupted; all are rejected with "aborted".
-- ctl:abort(reason): signal.reason is the reason (by default an error with
-- code aborted, as Node's AbortError), and each rejection's err.cause.
function luapool.AbortController()
  local signal = setmetatable({ aborted = false,
                                _tasks = setmetatable({}, { __mode = "k" }) }, Signal)
  local ctl = { signal = signal }
  function ctl.abort(a, b)  -- ctl:abort(reason), or ctl.abort(reason)
    local reason
    if a == ctl then reason = b else reason = a end
    if signal.aborted then return end
    signal.aborted = true
    if reason == nil then reason = new_error("aborted", "This operation was aborted") end
    signal.reason = reason
    local tasks = {}
    for task in pairs(signal._tasks) do tasks[#tasks + 1] = task end
    for _, task in ipairs(tasks) do
      task[T_POOL]:_abort(task, "aborted", ABORTED, "aborted", ABORTED, reason)
    end
  end
  return ctl
end

---------------------------------------------------------------------------
-- Pools

local Pool = {}
local methods = {}
local fields = {}

local events = { message = true, drain = true, needsDrain = true, error = true,
                 workerCreate = true, workerDestroy = true, close = true }
local EVENT_NAMES = "close, drain, error, message, needsDrain, workerCreate, workerDestroy"

-- Events wait in the pool's queue of due callbacks, in the order they
-- happened, beside settled tasks; run_due fires them.
local Event = {}
Event.__index = Event

-- An event keeps the list of handlers it was emitted to; on, once and off
-- replace a pool's list rather than change it.
local function emit(self, name, ...)
  local list = self._handlers[name]
  if not list then return end
  local t = self._dtail + 1
  self._dtail = t
  self._dueq[t] = setmetatable({ list = list, n = select("#", ...), ... }, Event)
end

-- The next handler of an event, or nil when all have run.
function Event:_next_callback()
  local i = (self.i or 0) + 1
  self.i = i
  return self.list[i]
end

-- Timeouts that passed abort their tasks; workers that were interrupted and
-- did not stop within terminateTimeout are given up on: detached, reported
-- through "error", and replaced.
-- What is due in a map of deadlines, collected before anything acts on it
-- (acting may change the map, or destroy the pool).
local function due(map, t)
  local list
  for k, deadline in pairs(map) do
    if t >= deadline then
      list = list or {}
      list[#list + 1] = k
    end
  end
  return list
end

local function run_timers(self)
  local t = now()
  local timed = self._ntimed > 0 and due(self._timed, t)
  if timed then
    for _, task in ipairs(timed) do
      if not self._core then return end
      self:_abort(task, "timeout", TIMED_OUT, "timeout", TIMED_OUT)
    end
  end
  local stuck = self._nstopping > 0 and due(self._stopping, t)
  if stuck then
    for _, p in ipairs(stuck) do
      if not self._core then return end
      if self._stopping[p] then
        self._stopping[p] = nil
        self._nstopping = self._nstopping - 1
        local id, killed = self._core:abandon(p)
        -- a process is killed: its worker leaves as any ended one does
        if id and not killed then
          local ms = self._opts.terminateTimeout or DEFAULT_TERMINATE_MS
          self._exits = self._exits + 1
          self._core:maintain()
          emit(self, "error", new_error("terminate_timeout", ("Failed to terminate worker %d " ..
            "within %g ms: it runs code that takes no interrupt (a loop LuaJIT compiled, " ..
            "or a blocking C call); its thread is detached and left running"):format(id, ms),
            nil, nil, id))
          emit(self, "workerDestroy", id)
        end
      end
    end
  end
end

-- The earliest timer, in ms from now, or nil.
local function first_deadline(self)
  local first
  for _, d in pairs(self._timed) do if not first or d < first then first = d end end
  for _, d in pairs(self._stopping) do if not first or d < first then first = d end end
  return first
end

local function next_timer(self)
  local first = first_deadline(self)
  return first and math.max(0, first - now())
end

-- Once pollfd() was asked for, its timer follows the earliest timer, so an
-- event loop that only watches the fd wakes for timeouts too.
local function rearm(self)
  if not self._fd or not self._core then return end
  local first = self._ntimed + self._nstopping > 0 and first_deadline(self) or nil
  if first ~= self._armed then
    self._armed = first
    self._core:arm(first and math.max(0, first - now()) or -1)
  end
end

-- Runs the callbacks of settled tasks and the handlers of events, one at a
-- time from a queue kept on the pool: if one raises, the error goes to the
-- caller and the rest stay queued for the next poll. Never nested: a
-- callback that waits (get, wait, map) settles tasks, and their callbacks
-- run after it returns.
local function run_queue(self)
  local q = self._dueq
  while self._dhead <= self._dtail do
    local i = self._dhead
    local item = q[i]
    if getmetatable(item) == Event then
      local fn = item:_next_callback()
      if fn then fn(unpack(item, 1, item.n)) else q[i] = nil; self._dhead = i + 1 end
    else
      local fn = item:_next_callback()
      if fn then
        item:_call(fn)
        -- its last callback (none added meanwhile): no second visit to learn so
        if not item[T_CB] then q[i] = nil; self._dhead = i + 1 end
      else
        q[i] = nil; self._dhead = i + 1
      end
    end
  end
  self._dhead, self._dtail = 1, 0
end

local function run_due(self)
  if self._in_callback then return end
  self._in_callback = true
  local ok, err = pcall(run_queue, self)
  self._in_callback = false
  if not ok then error(err, 0) end
end

-- After settling: timers, "drain" if nothing is left, then what is due.
local function after_poll(self)
  if self._ntimed + self._nstopping > 0 and self._core then run_timers(self) end
  if self._npending == 0 and not self._drained then
    self._drained, self._needs_drain = true, false
    emit(self, "drain")
  end
  if self._dhead <= self._dtail then run_due(self) end
  if self._fd then rearm(self) end
end

-- A task leaves the pool's books: its timer and its signal forget it.
local function forget(self, task)
  self._pending[task[T_SLOT]] = nil
  self._npending = self._npending - 1
  self._completed = self._completed + 1
  task[T_SLOT] = nil
  -- coroutines awaiting under cqueues wait for the fd, which says nothing of
  -- results another coroutine's poll or get took: wake them to look (Task:await)
  if self._cq_cond then self._cq_cond:signal() end
  if task[T_DEADLINE] then
    self._timed[task] = nil
    self._ntimed = self._ntimed - 1
  end
  if task[T_SIGNAL] then task[T_SIGNAL]._tasks[task] = nil end
end

-- The core's callback takes at most four values after workerId (see
-- push_msg in src/luapool.c): named, not a vararg, which LuaJIT would leave
-- to the interpreter on every call.
local function make_settle(self)
  local pending, stopping = self._pending, self._stopping
  return function(p, ok, workerId, a, b, c, d)
    if ok == nil then  -- a worker event
      if p == "message" then emit(self, "message", a, workerId)
      elseif p == "error" then
        emit(self, "error", new_error("worker_error", a, nil, nil, workerId))
      else
        if p == "workerDestroy" then self._exits = self._exits + 1 end
        emit(self, p, workerId)
      end
      return
    end
    local task = pending[p]
    if not task then  -- settled already (aborted); its worker has let go
      if stopping[p] then stopping[p] = nil; self._nstopping = self._nstopping - 1 end
      return
    end
    forget(self, task)
    if ok then
      task[T_N], task[T_RES] = a, b
      task[T_STATE] = "fulfilled"
    else  -- code, message, value, traceback
      task[T_ERR] = new_error(a, b, c, d, workerId)
      task[T_STATE] = "rejected"
    end
    if task[T_CB] then self:_due(task) end
  end
end

function luapool.new(options)
  local opts = check_options(options)
  local cfg = {
    -- the name as given: without one, a file need not have "default"
    filename = opts.filename, name = options and options.name, handler = opts.handler,
    minThreads = opts.minThreads, maxThreads = opts.maxThreads,
    idleTimeout = opts.idleTimeout,
    maxQueue = opts.maxQueue == math.huge and -1 or opts.maxQueue,
    workerData = opts.workerData,
    path = package.path, cpath = package.cpath,
    isolate = opts.isolateWorkers and 1 or 0,
    teardown = opts.teardown,
    maxHeapBytes = opts.resourceLimits and opts.resourceLimits.maxHeapBytes,
    maxMemoryLimitBeforeRecycle = opts.maxMemoryLimitBeforeRecycle,
    terminateTimeout = opts.terminateTimeout,  -- for __gc
    loadTimeout = opts.loadTimeout,
    runtime = opts.runtime, env = opts.env,
  }
  if opts.filename then  -- a missing file or a syntax error fails here
    local f, err = loadfile(opts.filename)
    if not f then raise("load_error", err) end
    -- compiled once here; each worker state loads the bytecode
    local ok, bytecode = pcall(string.dump, f)
    if ok then cfg.bytecode = bytecode end
  end
  local c, code, msg = core.new(cfg)
  if not c then raise(code, msg) end
  -- What only running the file tells (a name or teardown it lacks, a value
  -- that is no handler) is known once the first worker has loaded it.
  if opts.filename and opts.minThreads > 0 then
    local err = c:loaded(opts.loadTimeout)
    if err then
      c:destroy(opts.terminateTimeout or DEFAULT_TERMINATE_MS)
      raise("load_error", err)
    end
  end
  local self = {
    _core = c, _pending = {}, _npending = 0, _completed = 0,
    _dueq = {}, _dhead = 1, _dtail = 0,  -- settled tasks and events whose callbacks are due
    _handlers = {}, _opts = opts, _created = now(), _drained = true,
    _once = setmetatable({}, { __mode = "k" }),  -- once's wrappers, by handler
    _timed = {}, _ntimed = 0,        -- tasks with a timeout: their deadline
    _stopping = {}, _nstopping = 0,  -- workers interrupted: when to give up
    _exits = 0,                      -- workerDestroy events so far
    -- flags set later, there from the start: a field that is present takes
    -- LuaJIT's fixed-slot lookup, an absent one a search on every read
    _closed = false, _destroyed = false, _in_callback = false, _needs_drain = false,
    _fd = false, _cq_cond = false,
  }
  for k, f in pairs(methods) do self[k] = f end
  self._settle = make_settle(self)
  self._submit = c:submitter()
  return setmetatable(self, Pool)
end

Pool.__index = function(self, k)
  local f = fields[k]
  if f then return f(self) end
end
-- Destroying from the garbage collector or a <close> variable cannot raise.
Pool.__close = function(self) pcall(self.destroy, self) end
Pool.__gc = function(self) pcall(self.destroy, self) end
Pool.__tostring = function(self)
  return "luapool.Pool (" .. (self._destroyed and "destroyed" or #self.threads .. " threads") .. ")"
end

-- Which handler a run names: 0 the pool's default, 1 a file and function
-- name, 2 a handler function.
local function no_filename()
  raise("load_error", "filename must be provided to run() or in options object")
end

local function resolve(self, opts)
  local o = self._opts
  local filename, name, handler
  if opts ~= nil then
    if type(opts) ~= "table" then raise("invalid_option", "run options must be a table") end
    for k in pairs(opts) do
      if k ~= "filename" and k ~= "name" and k ~= "handler" and k ~= "signal" and k ~= "timeout" then
        raise("invalid_option", "unknown run option '" .. tostring(k) .. "'")
      end
    end
    filename, name, handler = opts.filename, opts.name, opts.handler
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
  end
  if filename == nil and (name == nil or name == o.name) then
    if o.filename == nil and o.handler == nil then no_filename() end
    return 0
  end
  filename = filename or o.filename
  if filename == nil then no_filename() end
  return 1, filename, name or o.name
end

local function submit(self, value, opts, workerId)
  if self._closed then
    raise("destroyed", self._destroyed and "The pool is destroyed" or "The pool is closed")
  end
  local kind, a, b = resolve(self, opts)
  local signal, timeout = opts and opts.signal, opts and opts.timeout
  if signal ~= nil then
    if getmetatable(signal) ~= Signal then
      raise("invalid_option", "signal argument must be the signal of a luapool.AbortController()")
    end
    if signal.aborted then
      local e = new_error("aborted", "The task has been aborted")
      e.cause = signal.reason
      error(e, 2)
    end
  end
  if timeout ~= nil and not (type(timeout) == "number" and timeout >= 0) then
    raise("invalid_option", "timeout argument must be a non-negative number of milliseconds")
  end
  local p, code, msg = self._submit(kind, a, b, value, workerId)
  if not p then raise(code, msg) end
  -- every field a task may get (T_SLOT..T_SIGNAL), so that it never grows;
  -- `no`, not the literal false: LuaJIT gives a constructor that mixes
  -- constants with variables a hash part, which a task would allocate too
  local task = setmetatable({ p, self, no, no, no, no, no, no, no }, Task)
  self._pending[p] = task
  self._npending = self._npending + 1
  self._drained = false
  if timeout then
    task[T_DEADLINE] = now() + timeout
    self._timed[task] = task[T_DEADLINE]
    self._ntimed = self._ntimed + 1
    if self._fd then rearm(self) end
  end
  if signal then
    task[T_SIGNAL] = signal
    signal._tasks[task] = true
  end
  -- "needsDrain" once every worker is busy, again after the next "drain"
  if self._handlers.needsDrain and not self._needs_drain and fields.needsDrain(self) then
    self._needs_drain = true
    emit(self, "needsDrain")
  end
  return task
end

function methods.run(self, value, opts)
  return submit(self, value, opts)
end

function methods.runAll(self, value, opts)
  if self._closed then
    raise("destroyed", self._destroyed and "The pool is destroyed" or "The pool is closed")
  end
  local list = {}
  for _, t in ipairs(self._core and self._core:threads() or {}) do
    list[#list + 1] = submit(self, value, opts, t.id)
  end
  return list
end

-- Stops a task: a queued one is taken off the queue and rejected with
-- qcode; a running one is rejected with rcode at once while its worker is
-- interrupted (and given up on after terminateTimeout). True if it did either.
function methods._abort(self, task, qcode, qmsg, rcode, rmsg, cause)
  if task[T_STATE] or not self._core then return false end
  local p = task[T_SLOT]
  local r = self._core:stop(p)
  local err
  if r == "queued" then
    err = new_error(qcode, qmsg)
  elseif r == "running" then
    self._stopping[p] = now() + (self._opts.terminateTimeout or DEFAULT_TERMINATE_MS)
    self._nstopping = self._nstopping + 1
    if self._fd then rearm(self) end
    err = new_error(rcode, rmsg)
  else
    return false
  end
  err.cause = cause
  self:_settle_error(task, err)
  return true
end

function methods._due(self, task)
  local t = self._dtail + 1
  self._dtail = t
  self._dueq[t] = task
end

function methods._settle_error(self, task, err)
  forget(self, task)
  task[T_ERR] = err
  task[T_STATE] = "rejected"
  if task[T_CB] then self:_due(task) end
end

-- timeout (ms, an addition to the contract): wait that long at most for
-- something to settle; without it poll never blocks.
function methods.poll(self, timeout)
  check_duration("pool:poll", timeout)
  local before = self._completed
  after_poll(self)
  if self._core then  -- else destroyed, maybe by a callback
    timeout = timeout or 0
    if timeout ~= 0 and self._ntimed + self._nstopping > 0 then  -- wake for timers
      local timer = next_timer(self)
      if timer and timer < timeout then timeout = timer end
    end
    self._core:poll(timeout, self._settle)
    after_poll(self)
  end
  return self._completed - before
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
    if self._ntimed + self._nstopping > 0 then  -- wake for the next timer
      local timer = next_timer(self)
      if timer and (left < 0 or timer < left) then left = timer end
    end
    self._core:poll(left, self._settle)
  end
end

function methods._await(self, task, timeout)
  if task[T_STATE] then after_poll(self) return true end
  return block_until(self, function() return task[T_STATE] ~= false end, timeout)
end

function methods.wait(self, timeout)
  check_duration("pool:wait", timeout)
  return block_until(self, function() return self._npending == 0 end, timeout)
end

function methods.map(self, list, opts)
  if type(list) ~= "table" then bad_argument("pool:map", "expects a list, not " .. describe_value(list)) end
  local tasks, n = {}, #list
  -- raises the error of element i, with its index, cancelling the others
  local function fail(e, i)
    for j = 1, n do if tasks[j] then tasks[j]:cancel() end end
    if luapool.isError(e) then e.index = i end
    error(e, 3)
  end
  for i = 1, n do
    while true do  -- with a bounded queue, wait for room instead of failing
      local ok, t = pcall(submit, self, list[i], opts)
      if ok then tasks[i] = t break end
      if not (luapool.isError(t) and t.code == "queue_full") or self._npending == 0 then
        fail(t, i)
      end
      local before = self._completed
      block_until(self, function() return self._completed > before end)
    end
  end
  local out = {}
  for i = 1, n do
    local t = tasks[i]
    if not t[T_STATE] then self:_await(t) end
    if t[T_STATE] == "rejected" then fail(t[T_ERR], i) end
    out[i] = (t:_values())
  end
  return out
end

-- A streaming map, in lua/luapool/imap.lua.
function methods.imap(self, src, opts)
  return require("luapool.imap").imap(self, src, opts)
end

local function check_event(fname, event, fn)
  if not events[event] then
    bad_argument(fname, "unknown event " .. describe_value(event) .. " (events: " ..
                 EVENT_NAMES .. ")")
  end
  check_function(fname, fn)
end

-- A copy of the event's handlers with fn added.
local function add_handler(self, event, fn)
  local list = {}
  for i, f in ipairs(self._handlers[event] or {}) do list[i] = f end
  list[#list + 1] = fn
  self._handlers[event] = list
end

function methods.on(self, event, fn)
  check_event("pool:on", event, fn)
  add_handler(self, event, fn)
  return self
end

-- fn runs for the next event of that name only.
function methods.once(self, event, fn)
  check_event("pool:once", event, fn)
  local function once(...)
    self:off(event, fn)
    return fn(...)
  end
  self._once[fn] = once
  add_handler(self, event, once)
  return self
end

-- Removes fn (added by on or once) from the event's handlers.
function methods.off(self, event, fn)
  check_event("pool:off", event, fn)
  local list, wrapped = {}, self._once[fn]
  for _, f in ipairs(self._handlers[event] or {}) do
    if f ~= fn and f ~= wrapped then list[#list + 1] = f end
  end
  self._once[fn] = nil
  self._handlers[event] = list[1] and list or nil
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

-- Replaces every worker with a fresh one: idle ones at once, busy ones
-- once their task is done. Waits until all are replaced, or `timeout` ms
-- passed (true, or false: the busy ones are still replaced when their task
-- ends).
local recycle_rules = {
  runtime = option_rules.runtime,
  timeout = { kind = "duration" },
}

function methods.recycleWorkers(self, opts)
  local runtime
  if opts ~= nil then
    if type(opts) ~= "table" then raise("invalid_option", "recycleWorkers options must be a table") end
    check_fields(opts, recycle_rules, "")
    runtime = option_rules.runtime.values[opts.runtime]
  end
  if self._closed then raise("destroyed", "The pool is destroyed") end
  self:poll()  -- take in exits that happened before: they do not count
  if not self._core then raise("destroyed", "The pool is destroyed") end
  local retiring, code, msg = self._core:retire(runtime)
  if not retiring then raise(code, msg) end
  if runtime then self._opts.runtime = runtime end
  local target = self._exits + retiring
  local done = block_until(self, function() return self._exits >= target end,
                           opts and opts.timeout)
  if self._core then self._core:maintain() end
  return done
end

-- close([{ force = true }]): refuses new tasks; waits for the queued ones
-- (force: rejects them, cancelled) and the running ones, at most
-- closeTimeout ms (past it, destroys and says so through "error"); then
-- destroys and fires "close".
local close_rules = { force = { kind = "boolean" } }

function methods.close(self, opts)
  if opts ~= nil then
    if type(opts) ~= "table" then
      bad_argument("pool:close", "options must be a table, not " .. describe_value(opts))
    end
    check_fields(opts, close_rules, "")
  end
  if self._destroyed then return end
  self._closed = true
  if opts and opts.force then self:cancelPendingTasks() end
  local limit = self._opts.closeTimeout
  if not self:wait(limit) then
    emit(self, "error", new_error("timeout", ("The pool did not finish its tasks within " ..
      "closeTimeout (%g ms): it is destroyed"):format(limit)))
  end
  self:destroy()
  emit(self, "close")
  after_poll(self)
end

function methods.destroy(self)
  if self._destroyed then return end
  self._destroyed, self._closed = true, true
  local c = self._core
  for _, task in pairs(self._pending) do
    self:_settle_error(task, new_error("terminated", "Terminating worker thread"))
  end
  self._stopping, self._nstopping = {}, 0
  local stuck = c:destroy(self._opts.terminateTimeout or DEFAULT_TERMINATE_MS)
  self._core = nil
  if stuck > 0 then
    raise("terminate_timeout", ("Failed to terminate worker: %d worker(s) did not stop " ..
      "and are left running, detached"):format(stuck))
  end
end

function methods.pollfd(self)
  if self._destroyed then raise("destroyed", "The pool is destroyed") end
  local fd = self._core:pollfd()
  if not self._fd then
    self._fd = true
    rearm(self)
  end
  return fd
end
function methods.events() return "r" end
-- For event loops (cqueues' pollable protocol): seconds until the pool needs
-- poll() without its fd becoming readable (a timer, callbacks left over when
-- one raised), or nil when only the fd matters.
function methods.timeout(self)
  if self._dhead <= self._dtail or (self._core and self._core:backlog()) then return 0 end
  if self._ntimed + self._nstopping > 0 then
    local t = next_timer(self)
    return t and t / 1000
  end
  return nil
end

function fields.queueSize(self) return self._core and self._core:queueSize() or 0 end
function fields.completed(self) return self._completed end
function fields.minThreads(self) return self._opts.minThreads end
function fields.maxThreads(self) return self._opts.maxThreads end
-- The real-time signal that interrupts this pool's workers (the first one
-- from SIGRTMIN+5 up that the host leaves alone).
function fields.interruptSignal(self) return self._core and self._core:signal() end
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

-- A dot for a colon (pool.run(x)) gets an error that says so, not "attempt
-- to index a nil value".
local function guard_methods(mt, kind, list)
  for name, f in pairs(list) do
    if type(f) == "function" and name:sub(1, 1) ~= "_" then
      list[name] = function(self, ...)
        if getmetatable(self) ~= mt then
          bad_argument(kind .. "." .. name, ("call it with a colon: %s:%s(...)"):format(kind, name))
        end
        return f(self, ...)
      end
    end
  end
end
guard_methods(Pool, "pool", methods)
guard_methods(Task, "task", Task)

return luapool
