-- luapool.cli: the luapool command. Runs a task file's handler over JSON
-- lines in parallel: the main thread reads lines and writes bytes; the
-- workers decode, run the handler and encode (lua/luapool/chunk.lua's
-- jsonl), a chunk of lines per task, through luapool.imap's stream.
local luapool = require "luapool"
local imap = require "luapool.imap"
local now = require("luapool.core").now

local cli = {}

local USAGE = [[
usage: luapool [options] TASKFILE [FILE...]

Runs TASKFILE's handler on each line of the FILEs (or of stdin: no FILE,
or "-"), one JSON value a line, on a pool of worker threads, and writes
the handler's first return value as one JSON line, in input order. A line
that fails gets {"error":{"code":...,"message":...,"line":N}} in its place.

options:
  -j, --threads N       worker threads (default: the number of cores, %d here)
  -n, --name NAME       the task file's function to run (default: "default")
      --runtime R       threads or process (default: threads)
      --isolate         a fresh Lua state for every chunk of lines
      --timeout MS      milliseconds a line may take (its error: timeout)
      --max-memory B    replace a worker whose heap grew past B bytes
      --heap-limit B    fail a line whose worker heap would pass B bytes
      --worker-data J   JSON value given to workers as luapool.workerData
      --chunk N         lines per task (default: chosen from measured times,
                        so that a task takes about 20 ms, and at most
                        64 KiB of input)
      --unordered       write results as they finish, not in input order
      --fail-fast       stop at the first line that fails
      --progress        show a progress bar on stderr
      --no-progress     do not (default: shown when stderr is a terminal)
      --stats           print run and wait times, utilization and lines/s
                        to stderr at the end
      --version         print the version and exit
  -h, --help            print this help and exit

exit status: 0 all lines succeeded, 1 some line failed, 2 usage error or a
task file that cannot be loaded, 130 interrupted (Ctrl-C).
]]

-- Errors that end the command: a message for stderr and an exit status.
local Exit = {}
local function fail(status, fmt, ...)
  error(setmetatable({ status = status, message = fmt:format(...) }, Exit), 0)
end
local function usage(fmt, ...)
  fail(2, "luapool: " .. fmt .. " (see luapool --help)", ...)
end

-- Options: name -> field and kind ("flag", "int", "string", "json").
local OPTS = {
  ["-j"] = { "threads", "int" }, ["--threads"] = { "threads", "int" },
  ["-n"] = { "name", "string" }, ["--name"] = { "name", "string" },
  ["--runtime"] = { "runtime", "string" },
  ["--isolate"] = { "isolate", "flag" },
  ["--timeout"] = { "timeout", "int" },
  ["--max-memory"] = { "max_memory", "int" },
  ["--heap-limit"] = { "heap_limit", "int" },
  ["--worker-data"] = { "worker_data", "string" },
  ["--chunk"] = { "chunk", "int" },
  ["--unordered"] = { "unordered", "flag" },
  ["--fail-fast"] = { "fail_fast", "flag" },
  ["--progress"] = { "progress", "flag", true },
  ["--no-progress"] = { "progress", "flag", false },
  ["--stats"] = { "stats", "flag" },
  ["--version"] = { "version", "flag" },
  ["-h"] = { "help", "flag" }, ["--help"] = { "help", "flag" },
}

function cli.parse(args)
  local o, rest, i = {}, {}, 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do rest[#rest + 1] = args[j] end
      break
    end
    local name, value = a:match("^(%-%-[^=]+)=(.*)$")
    if not name and a:match("^%-[jn].") then name, value = a:sub(1, 2), a:sub(3) end
    name = name or a
    local spec = OPTS[name]
    if a == "-" or a:sub(1, 1) ~= "-" then
      rest[#rest + 1] = a
    elseif not spec then
      usage("unknown option %s", a)
    elseif spec[2] == "flag" then
      if value then usage("option %s takes no value", name) end
      if spec[3] == nil then o[spec[1]] = true else o[spec[1]] = spec[3] end
    else
      if not value then
        i = i + 1
        value = args[i]
        if value == nil then usage("option %s needs a value", name) end
      end
      if spec[2] == "int" then
        local n = tonumber(value)
        if not n or n ~= math.floor(n) or n < (spec[1] == "timeout" and 0 or 1) then
          usage("option %s needs a positive whole number, not '%s'", name, value)
        end
        value = n
      end
      o[spec[1]] = value
    end
    i = i + 1
  end
  if o.runtime and o.runtime ~= "threads" and o.runtime ~= "process" then
    usage("option --runtime must be threads or process, not '%s'", o.runtime)
  end
  o.taskfile = table.remove(rest, 1)
  o.inputs = rest
  return o
end

---------------------------------------------------------------------------
-- Input: lines of one file after another, with the bytes read so far.

local function open_inputs(names)
  if #names == 0 then names = { "-" } end
  local files, size = {}, 0
  for i, name in ipairs(names) do
    local f, err = io.stdin, nil
    if name ~= "-" then f, err = io.open(name, "rb") end
    if not f then fail(2, "luapool: cannot open input: %s", err) end
    -- a regular file (stdin too, when redirected from one) has a size
    local ok, len = pcall(f.seek, f, "end")
    if ok and len and f:seek("set", 0) then size = size and size + len else size = nil end
    files[i] = f
  end
  return files, size
end

-- Reads the files in blocks and hands out whole lines, `want` of them at a
-- time: a chunk's task { lines, pre = the start of its first line } (each
-- line ending in "\n") and their count. The main thread only looks for
-- newlines; the workers split the lines. A chunk is one copy out of its
-- block; the line cut at a block's end goes with the next chunk as `pre`,
-- so blocks are never joined. An automatic chunk (not `exact`) ends where
-- its block does; one of --chunk N lines is joined from its pieces.
local BLOCK = 65536  -- LuaJIT maps a string past 128 KiB with a system call of its own
-- An automatic chunk aims at 20 ms of work, more than pool:imap's 5: lines
-- of a few microseconds then fill a block, and when other jobs share the
-- cores (a task's time counts the waits for one) chunks do not shrink into
-- more tasks, each waking the main thread.
local TARGET_MS = 20
local function line_source(files, input)
  local find, sub, concat, k, buf, start = string.find, string.sub, table.concat, 1, "", 1
  local nl_end = true  -- the last byte read is a newline (or none was read)
  local function more()  -- the next bytes; nil at the end
    while files[k] do
      local s = files[k]:read(BLOCK)
      if s then
        nl_end = s:byte(-1) == 10
        return s
      end
      if files[k] ~= io.stdin then files[k]:close() end
      k = k + 1
      -- a file's last line may lack its newline
      if not nl_end then nl_end = true return "\n" end
    end
    return nil
  end
  return function(want, exact)
    local count, pos, head, parts = 0, start - 1, {}, nil
    while count < want do
      local nl = find(buf, "\n", pos + 1, true)
      if nl then
        count, pos = count + 1, nl
      elseif count > 0 and not exact then
        break
      else
        local s = more()
        if not s then break end
        local rest = sub(buf, start)
        if count > 0 then  -- lines counted and the start of one: join them
          parts = parts or {}
          parts[#parts + 1] = rest
        else  -- the start of the first line (of a line longer than a block: a piece)
          head[#head + 1] = rest
        end
        buf, start, pos = s, 1, 0
      end
    end
    if count == 0 then return nil end
    local pre, lines = concat(head), sub(buf, start, pos)
    if parts then
      parts[#parts + 1] = lines
      lines = concat(parts)
    end
    start = pos + 1
    input.bytes, input.pulled = input.bytes + #pre + #lines, input.pulled + count
    return { lines, pre = pre ~= "" and pre or nil }, count
  end
end

-- A chunk's lines, one a string, to retry them one per task.
local function chunk_lines(task)
  local out = {}
  for line in ((task.pre or "") .. task[1]):gmatch("[^\n]*\n") do out[#out + 1] = line end
  return out
end

---------------------------------------------------------------------------
-- Progress bar on stderr: lines done, rate, and with a known input size a
-- percentage and an ETA; at most 10 redraws a second, erased at the end.

local function isatty(fd)
  local ok, ffi = pcall(require, "ffi")
  if ok then
    pcall(ffi.cdef, "int isatty(int fd);")
    return ffi.C.isatty(fd) == 1
  end
  local r = os.execute("[ -t " .. fd .. " ]")
  return r == true or r == 0
end

local function si(n)
  if n >= 1e6 then return ("%.1fM"):format(n / 1e6) end
  if n >= 1e4 then return ("%.0fk"):format(n / 1e3) end
  return ("%d"):format(math.floor(n))
end

local function progress_bar(input)
  local t0, last = now(), -1e9
  local bar = {}
  function bar.draw(done, final)
    local t = now()
    if not final and t - last < 100 then return end
    last = t
    local secs = (t - t0) / 1000
    local rate = secs > 0 and done / secs or 0
    local text = ("%s lines  %s lines/s"):format(si(done), si(rate))
    if input.size and input.size > 0 and input.pulled > 0 then
      local frac = math.min(1, input.bytes * (done / input.pulled) / input.size)
      local width = 20
      local full = math.floor(frac * width)
      local eta = frac > 0 and secs * (1 - frac) / frac or 0
      text = ("[%s%s] %3d%%  %s  ETA %d:%02d"):format(("#"):rep(full), ("."):rep(width - full),
        math.floor(frac * 100), text, math.floor(eta / 60), math.floor(eta % 60))
    end
    io.stderr:write("\r", text, "\27[K")
  end
  function bar.erase() io.stderr:write("\r\27[K") end
  return bar
end

---------------------------------------------------------------------------
-- Ctrl-C. Under LuaJIT, SIGINT is blocked (before the workers start, so
-- their threads inherit the mask) and the main loop looks at pending
-- signals between results: nothing is interrupted half-way. Elsewhere,
-- lua.c's handler raises "interrupted!" in the main state.

local function sigint_watch()
  local ok, ffi = pcall(require, "ffi")
  if not ok then return nil end
  pcall(ffi.cdef, [[
    typedef struct { unsigned long bits[16]; } luapool_sigset;
    int sigemptyset(luapool_sigset *set);
    int sigaddset(luapool_sigset *set, int sig);
    int sigismember(const luapool_sigset *set, int sig);
    int sigpending(luapool_sigset *set);
    int sigprocmask(int how, const luapool_sigset *set, luapool_sigset *old);
  ]])
  local C, SIGINT, SIG_BLOCK = ffi.C, 2, 0
  local set, pending = ffi.new("luapool_sigset"), ffi.new("luapool_sigset")
  C.sigemptyset(set)
  C.sigaddset(set, SIGINT)
  if C.sigprocmask(SIG_BLOCK, set, nil) ~= 0 then return nil end
  return function()
    return C.sigpending(pending) == 0 and C.sigismember(pending, SIGINT) == 1
  end
end

---------------------------------------------------------------------------
-- Running

local function load_cjson()
  local ok, cjson = pcall(require, "cjson")
  if not ok then fail(2, "luapool: lua-cjson is needed (apt-get install lua-cjson): %s", cjson) end
  return cjson
end

local function new_pool(o, cjson)
  local opts = {
    filename = o.taskfile, name = o.name, minThreads = o.threads, maxThreads = o.threads,
    runtime = o.runtime, isolateWorkers = o.isolate or nil,
    maxMemoryLimitBeforeRecycle = o.max_memory,
    resourceLimits = o.heap_limit and { maxHeapBytes = o.heap_limit } or nil,
  }
  if o.threads == nil then opts.minThreads, opts.maxThreads = luapool.cpus(), luapool.cpus() end
  if o.worker_data then
    local ok, v = pcall(cjson.decode, o.worker_data)
    if not ok then usage("option --worker-data is not valid JSON: %s", v) end
    opts.workerData = v
  end
  local ok, pool = pcall(luapool.new, opts)
  if not ok then
    local msg = luapool.isError(pool) and pool.message or tostring(pool)
    if luapool.isError(pool) and pool.code == "load_error" then
      fail(2, "luapool: cannot load task file %s: %s", o.taskfile, msg)
    end
    fail(2, "luapool: %s", msg)
  end
  -- the file's top level and the handler's name, checked before any input
  local err
  ok, err = pcall(function()
    return pool:run({ f = o.taskfile, m = o.name }, { filename = imap.RUNNER, name = "check" }):get()
  end)
  if not ok then err = luapool.isError(err) and err.message or tostring(err) end
  if err then
    pool:destroy()
    fail(2, "luapool: cannot load task file %s: %s", o.taskfile, err)
  end
  return pool
end

-- Writes bytes to stdout; a closed pipe ends the command quietly.
local function writer()
  local out = io.stdout
  out:setvbuf("full", 65536)
  local function check(err, code)
    if code == 32 or tostring(err):find("Broken pipe", 1, true) then fail(141, "") end
    fail(1, "luapool: cannot write output: %s", tostring(err))
  end
  local function write(s)
    local ok, err, code = out:write(s)
    if not ok then check(err, code) end
  end
  local function flush()
    local ok, err, code = out:flush()
    if not ok then check(err, code) end
  end
  return write, flush
end

local function error_lines(rec, n)
  local error_line, out = require("luapool.chunk").error_line, {}
  for i = 1, n do
    out[i] = error_line(rec.err.code, rec.err.message, rec.first + i - 1)
  end
  out[n + 1] = ""
  return (table.concat(out, "\n"):gsub("\\/", "/"))
end

-- Writes one settled record; returns how many lines failed in it, and
-- whether --fail-fast stops here.
local function output(o, write, rec)
  if rec.err then  -- every line of the chunk failed; --fail-fast: the first
    local n = o.fail_fast and 1 or rec.n
    write(error_lines(rec, n))
    return n, o.fail_fast
  end
  local s, nerr, _, k = rec.values[1], rec.values[2], rec.values[3], rec.values[4]
  if o.fail_fast and k then  -- up to the first failed line
    local pos = 0
    for _ = 1, k do pos = s:find("\n", pos + 1, true) end
    write(s:sub(1, pos))
    return 1, true
  end
  write(s)
  return nerr, false
end

local function print_stats(pool, lines, ms)
  local r, w = pool.runTime, pool.waitTime
  io.stderr:write(("luapool: %d lines in %.2f s, %s lines/s, %d threads, utilization %.0f%%\n")
    :format(lines, ms / 1000, si(ms > 0 and lines / ms * 1000 or 0), pool.options.maxThreads,
            pool.utilization * 100))
  io.stderr:write(("luapool: task run time mean %.3f ms p50 %.3f p99 %.3f; wait time mean %.3f ms p99 %.3f; %d tasks\n")
    :format(r.mean, r.p50, r.p99, w.mean, w.p99, pool.completed))
end

local function run(o)
  local cjson = load_cjson()
  local interrupted = sigint_watch()
  local pool = new_pool(o, cjson)  -- the task file is checked before any input is opened
  local opened, files, size = pcall(open_inputs, o.inputs)
  if not opened then pool:destroy() error(files, 0) end
  local input = { bytes = 0, size = size, pulled = 0 }
  local src = line_source(files, input)
  local stream = imap.stream(pool, src, {
    chunk = o.chunk, ordered = not o.unordered, timeout = o.timeout,
  }, { run = "jsonl", blocks = chunk_lines, target_ms = TARGET_MS,
       pack = function(task, rec) task.line = rec.first end })
  local show = o.progress
  if show == nil then show = isatty(2) end
  local bar = show and progress_bar(input)
  local write, flush = writer()
  local t0, failed, status = now(), 0, 0
  local ok, err = pcall(function()
    while true do
      local rec = stream:take(0)
      if rec == false then  -- nothing ready: let the reader see what is written
        flush()
        rec = stream:take(100)
      end
      if rec == nil then break end
      if rec then
        local nerr, stop = output(o, write, rec)
        failed = failed + nerr
        if stop then stream:stop() break end
      end
      if interrupted and interrupted() then error("interrupted!", 0) end
      if bar then bar.draw(stream.settled) end
    end
    flush()
  end)
  if not ok and getmetatable(err) ~= Exit then
    -- Ctrl-C (lua.c raises "interrupted!"): write what finished, in order
    if not tostring(err):find("interrupted", 1, true) then error(err, 0) end
    status = 130
    local stopped = stream.order
    stream:stop()
    pcall(function()
      for _, rec in ipairs(stopped) do
        if not rec.settled or rec.err then break end
        output(o, write, rec)
      end
      flush()
    end)
  end
  if bar then bar.erase() end
  if o.stats then print_stats(pool, stream.settled, now() - t0) end
  pool:destroy()
  if not ok and getmetatable(err) == Exit then error(err, 0) end
  if status == 0 and failed > 0 then status = 1 end
  return status
end

-- Runs the command with the arguments given; returns the exit status.
function cli.run(args)
  local ok, res = pcall(function()
    local o = cli.parse(args)
    if o.help then
      io.stdout:write(USAGE:format(luapool.cpus()))
      return 0
    end
    if o.version then
      io.stdout:write("luapool ", luapool._VERSION, "\n")
      return 0
    end
    if not o.taskfile then usage("missing TASKFILE") end
    return run(o)
  end)
  if ok then return res end
  if getmetatable(res) == Exit then
    if res.message ~= "" then io.stderr:write(res.message, "\n") end
    return res.status
  end
  io.stderr:write("luapool: ", tostring(res), "\n")
  return 1
end

function cli.main(args)
  local status = cli.run(args or {})
  io.stdout:flush()
  os.exit(status)
end

return cli
