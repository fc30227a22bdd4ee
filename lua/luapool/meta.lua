---@meta luapool
-- Type annotations of luapool's public API for lua-language-server (LuaCATS):
-- completion, hover and `undefined-field` warnings for typos such as
-- `pool.queuesize`. It is read by the editor, never run: `require "luapool"`
-- loads lua/luapool.lua. Add the directory this file is installed under (the
-- tree's share/lua/<version>) to the server's `workspace.library`.
-- What it describes is what the code does today; docs/API.md is the prose.

---@alias luapool.ErrorCode
---| "task_error"        # the handler raised; `value` is what it raised
---| "cancelled"         # task:cancel() or cancelPendingTasks() on a queued task
---| "aborted"           # an abort signal fired, or task:cancel() on a running task
---| "timeout"           # the run's `timeout` passed
---| "terminated"        # the pool was destroyed with the task unsettled
---| "queue_full"        # maxQueue reached
---| "serialize"         # a value could not cross between states
---| "load_error"        # a task file or handler name could not be loaded
---| "worker_exited"     # the worker ended (os.exit) or could not start
---| "out_of_memory"     # resourceLimits.maxHeapBytes reached
---| "terminate_timeout" # a worker did not stop within terminateTimeout
---| "destroyed"         # the pool is closed or destroyed
---| "invalid_option"    # a bad option
---| "invalid_argument"  # a bad argument to a function or method
---| "worker_error"      # an "error" event about a worker, tied to no task

---@alias luapool.Event "message"|"drain"|"needsDrain"|"error"|"workerCreate"|"workerDestroy"|"close"

---@alias luapool.TaskStatus "pending"|"running"|"fulfilled"|"rejected"

---What luapool raises and rejects with.
---@class luapool.Error
---@field code luapool.ErrorCode
---@field message string
---@field value any what the handler raised (copied), for `task_error`
---@field traceback string? the worker's traceback, when there is one
---@field workerId integer? the worker the error happened on
---@field cause any the abort signal's reason, for a task aborted through it
---@field index integer? the input's index, for an error of `map` or `imap`

---@class (exact) luapool.ResourceLimits
---@field maxHeapBytes? integer bytes (from 256 KiB) a worker state may allocate; past them the task fails with `out_of_memory`

---Options of `luapool.new`. Durations in milliseconds, memory in bytes.
---@class (exact) luapool.Options
---@field filename? string default task file, loaded at once to check it
---@field handler? function default handler, instead of a file
---@field name? string function of a file returning a table (default "default")
---@field minThreads? integer workers started at once and kept, 0..4096 (default max(1, cores/2))
---@field maxThreads? integer workers at most, 1..4096 (default: cores)
---@field idleTimeout? number ms an idle worker above minThreads lives on (default 0)
---@field maxQueue? integer|"auto" tasks waiting at most (default unbounded; "auto" = maxThreads^2; 0 = no queue)
---@field workerData? any a value copied into every worker as `luapool.workerData`
---@field isolateWorkers? boolean a fresh Lua state for every task
---@field terminateTimeout? number ms a worker has to stop once interrupted (default 1000)
---@field loadTimeout? number ms a task file's top level may run when a worker loads it (default 60000)
---@field closeTimeout? number ms `close()` waits for tasks before it destroys the pool (default: no limit)
---@field maxMemoryLimitBeforeRecycle? integer heap bytes after a task above which the worker is replaced
---@field resourceLimits? luapool.ResourceLimits
---@field teardown? string function of the task file called before a worker state closes
---@field runtime? "threads"|"process"|"worker_threads"|"child_process" where workers run (default "threads"; Tinypool's names too)
---@field env? table<string, string|number> runtime "process" only: exactly the workers' environment

---Options of `pool:run`, `pool:runAll` and `pool:map`.
---@class (exact) luapool.RunOptions
---@field filename? string task file, instead of the pool's
---@field name? string function of the task file
---@field handler? function handler function, instead of a file
---@field signal? luapool.AbortSignal from `luapool.AbortController()`
---@field timeout? number ms from the call; past it the task is rejected with `timeout`

---@class luapool.Stats
---@field min number ms
---@field max number ms
---@field mean number ms
---@field stddev number ms
---@field p50 number ms
---@field p90 number ms
---@field p99 number ms

---A live worker, as `pool.threads` lists it.
---@class luapool.ThreadInfo
---@field id integer the worker's slot, 1..maxThreads
---@field threadId integer unique for the life of the process (never reused)
---@field busy boolean
---@field tasks integer tasks it has run
---@field heapBytes integer its Lua state's heap after its last task

---@class luapool.AbortSignal
---@field aborted boolean
---@field reason any what `abort(reason)` was given (an aborted luapool.Error by default)

---@class luapool.AbortController
---@field signal luapool.AbortSignal
local AbortController = {}

---Rejects every unsettled task run with this signal with `aborted`:
---queued ones leave the queue, running ones are interrupted.
---@param reason? any becomes `signal.reason` and each rejection's `err.cause`
function AbortController:abort(reason) end

---A task run on the pool; Node's promise, as an object to wait on.
---@class luapool.Task
local Task = {}

---@return luapool.TaskStatus
function Task:status() end

---Waits until the task settles, or `ms` milliseconds at most.
---@param ms? number
---@return boolean settled
function Task:wait(ms) end

---Waits, then returns every value the handler returned, or raises its luapool.Error.
---@return any ...
function Task:get() end

---A queued task is removed (`cancelled`); a running one is rejected (`aborted`) and its worker interrupted.
---@return boolean done true if it did either
function Task:cancel() end

---Calls `fn(true, ...values)` or `fn(false, err)` on the main thread once settled (inside poll, wait, get or map).
---@param fn fun(ok: boolean, ...: any)
---@return luapool.Task self
function Task:onDone(fn) end

---For coroutine schedulers: yields until the task settles (through
---`cqueues.poll` inside a cqueues controller; else yields the pool, a
---pollable), then returns what `get()` does. Outside a coroutine, waits.
---@return any ...
function Task:await() end

---A pool of worker threads. Fields are read-only views of its state.
---@class luapool.Pool
---@field queueSize integer tasks waiting for a worker
---@field completed integer tasks settled, either way
---@field duration number ms since the pool was made
---@field threads luapool.ThreadInfo[] live workers
---@field utilization number 0..1: run time over the time maxThreads workers had
---@field needsDrain boolean tasks are queued, or every worker is busy
---@field runTime luapool.Stats how long tasks ran
---@field waitTime luapool.Stats how long tasks waited in the queue
---@field options luapool.Options a copy, defaults filled in
---@field interruptSignal integer the real-time signal that interrupts this pool's thread workers
---@field minThreads integer workers kept alive (options.minThreads, resolved)
---@field maxThreads integer workers at most (options.maxThreads, resolved)
local Pool = {}

---Queues a task; returns at once.
---@param value any copied to the worker
---@param options? luapool.RunOptions
---@return luapool.Task
function Pool:run(value, options) end

---Runs `value` once on every live worker.
---@param value any
---@param options? luapool.RunOptions
---@return luapool.Task[]
function Pool:runAll(value, options) end

---One task per element; returns the first value of each, in order, or raises the first error.
---@param list any[]
---@param options? luapool.RunOptions
---@return any[]
function Pool:map(list, options) end

---@class (exact) luapool.ImapOptions: luapool.RunOptions
---@field ordered? boolean results in input order (default), or as they finish
---@field window? integer chunks taken and not yet consumed, at most (default 4 × maxThreads)
---@field chunk? integer inputs per task (default: automatic, about 5 ms of work a task)
---@field failFast? boolean raise the first error and cancel the chunks in flight
---@field onProgress? fun(done: integer, total: integer?) at most 10 times a second, and once at the end
---@field total? integer the number of inputs, for onProgress, when the source is a function

---A streaming map: `for i, result, err in pool:imap(source) do ... end`.
---@param source any[]|fun(): any a list, or a function returning the next input (nil at the end)
---@param options? luapool.ImapOptions
---@return fun(): integer?, any, luapool.Error?
function Pool:imap(source, options) end

---Blocks until nothing is queued or running, or `ms` milliseconds at most.
---@param ms? number
---@return boolean done
function Pool:wait(ms) end

---Settles finished tasks and runs callbacks and events; blocks only when given `ms`.
---@param ms? number
---@return integer settled how many tasks it settled
function Pool:poll(ms) end

---A file descriptor readable while `poll()` has work (for luv, cqueues, copas).
---@return integer fd
function Pool:pollfd() end

---For cqueues' pollable protocol: always "r".
---@return "r"
function Pool:events() end

---Seconds until a timer needs a `poll()`, or nil when only the fd matters.
---@return number?
function Pool:timeout() end

---@param event "message"
---@param fn fun(value: any, workerId: integer)
---@return luapool.Pool self
---@overload fun(self: luapool.Pool, event: "drain"|"needsDrain"|"close", fn: fun()): luapool.Pool
---@overload fun(self: luapool.Pool, event: "error", fn: fun(err: luapool.Error)): luapool.Pool
---@overload fun(self: luapool.Pool, event: "workerCreate"|"workerDestroy", fn: fun(workerId: integer)): luapool.Pool
function Pool:on(event, fn) end

---As `on`, for the next such event only.
---@param event luapool.Event
---@param fn function
---@return luapool.Pool self
function Pool:once(event, fn) end

---Removes a handler added by `on` or `once`.
---@param event luapool.Event
---@param fn function
---@return luapool.Pool self
function Pool:off(event, fn) end

---Rejects every queued task with `cancelled`; running ones finish.
---@return integer cancelled
function Pool:cancelPendingTasks() end

---Replaces every worker with a fresh one (of `runtime` from then on): idle
---ones at once, busy ones after their task. True once all are replaced;
---false if `timeout` ms passed first.
---@param options? { runtime?: "threads"|"process"|"worker_threads"|"child_process", timeout?: number }
---@return boolean done
function Pool:recycleWorkers(options) end

---Refuses new tasks, lets queued (unless `force`: rejected `cancelled`) and
---running ones finish, at most closeTimeout ms, then destroys; fires "close".
---@param options? { force?: boolean }
function Pool:close(options) end

---Rejects every unsettled task with `terminated` and stops the workers. Idempotent.
function Pool:destroy() end

---`require "luapool"` inside a worker: the worker's view.
---@class luapool.WorkerView
---@field isMainThread false
---@field isWorkerThread true
---@field workerId integer 1..maxThreads, unique among live workers
---@field threadId integer? unique for the life of the host process (thread workers)
---@field workerData any a copy of the pool's `workerData`
---@field runtime "threads"|"process" the runtime this worker runs in
local WorkerView = {}

---Fires the pool's "message" event with a copy of `value` and this worker's id.
---@param value any
function WorkerView.postMessage(value) end

---As `luapool.channel` on the main side (thread workers only).
---@param capacity? integer
---@return luapool.Channel
function WorkerView.channel(capacity) end

---As `luapool.buffer` on the main side (thread workers only).
---@param nbytes integer
---@return luapool.Buffer
function WorkerView.buffer(nbytes) end

---A FIFO of values (copied through the codec) shared by the host and the
---thread workers of any pool; it crosses in values as itself. `#ch` is the
---number of values it holds.
---@class luapool.Channel
local Channel = {}

---Waits while full, `ms` at most (none: for ever). Pushing nil raises.
---@param value any
---@param ms? number
---@return boolean pushed
---@return "timeout"|"closed"|nil why
function Channel:push(value, ms) end

---The next value; nil after `ms` (none: waits for ever; 0: never waits), or once closed and empty.
---@param ms? number
---@return any
function Channel:pop(ms) end

---Refuses pushes from now on; pops take what is left.
function Channel:close() end

---@return boolean
function Channel:closed() end

---@return number capacity math.huge when unbounded
function Channel:capacity() end

---An eventfd readable while the channel holds values or is closed (host side).
---@return integer fd
function Channel:pollfd() end

---Zeroed memory shared by reference with thread workers. `#buf` is its size.
---Nothing orders concurrent access: writers must coordinate.
---@class luapool.Buffer
local Buffer = {}

---Bytes from `offset` (from 0; default 0), `len` of them (default: to the end).
---@param offset? integer
---@param len? integer
---@return string
function Buffer:read(offset, len) end

---Writes `s` at `offset` (from 0); bounds are checked.
---@param offset integer
---@param s string
function Buffer:write(offset, s) end

---The first byte's address, for `ffi.cast` under LuaJIT; valid while a state holds the buffer.
---@return lightuserdata
function Buffer:ptr() end

---`require "luapool"` on the main thread.
---@class luapool
---@field isMainThread boolean true here; false in a worker (see luapool.WorkerView)
---@field isWorkerThread boolean
---@field workerId integer? nil on the main thread
---@field workerData any nil on the main thread
---@field _VERSION string
local luapool = {}

---A monotonic clock, in milliseconds.
---@return number
function luapool.now() end

---A channel: a FIFO of at most `capacity` values (none: no limit).
---@param capacity? integer
---@return luapool.Channel
function luapool.channel(capacity) end

---A shared buffer of `nbytes` zeroed bytes.
---@param nbytes integer
---@return luapool.Buffer
function luapool.buffer(nbytes) end

---@param options? luapool.Options
---@return luapool.Pool
function luapool.new(options) end

---@return luapool.AbortController
function luapool.AbortController() end

---True for the error tables luapool raises and rejects with.
---@param v any
---@return boolean
---@nodiscard
function luapool.isError(v) end

---The number of cores this process may run on.
---@return integer
function luapool.cpus() end

return luapool
