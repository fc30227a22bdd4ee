-- luapool.imap: pool:imap, a streaming map, and the stream of chunks under
-- it that the luapool command drives too.
--
-- A stream pulls inputs from a source, packs them into chunks, runs each
-- chunk as one task of lua/luapool/chunk.lua (which calls the handler on
-- every input), and hands back settled chunks in input order or as they
-- finish. At most `window` chunks are unconsumed at a time, so memory stays
-- bounded whatever the input. A chunk whose task fails as a whole (timeout,
-- worker exit, out of memory, a value that cannot cross) is run again one
-- input per task, so its error lands on the input that caused it.
local luapool = require "luapool"
local now = require("luapool.core").now

local M = {}

-- The worker side, a task file beside this one.
M.RUNNER = (debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "chunk.lua"

-- Automatic chunk size: a chunk should keep a worker busy about TARGET_MS
-- (a task's round trip costs a few microseconds: under 1% of that), from
-- the mean run time per input of the tasks settled so far; at most
-- MAX_CHUNK inputs, and with a known total, at most total / (4 * threads)
-- so that every worker gets work.
local TARGET_MS, MAX_CHUNK, LOOK_EVERY = 5, 4096, 4
local PROGRESS_MS = 100  -- onProgress at most 10 times a second
-- Failures of a whole chunk that are retried one input per task.
local RETRY = { timeout = true, worker_exited = true, out_of_memory = true, serialize = true }

local Stream = {}
Stream.__index = Stream

local function bad(what)
  error(luapool._error("invalid_option", "pool:imap: " .. what), 3)
end

local function check(opts)
  local known = { ordered = 1, window = 1, chunk = 1, failFast = 1, onProgress = 1, total = 1,
                  filename = 1, name = 1, handler = 1, signal = 1, timeout = 1 }
  for k in pairs(opts) do
    if not known[k] then bad("unknown option '" .. tostring(k) .. "'") end
  end
  local function int(k)
    local v = opts[k]
    if v ~= nil and not (type(v) == "number" and v >= 1 and v == math.floor(v)) then
      bad("options." .. k .. " must be a positive integer")
    end
  end
  int("window"); int("chunk")
  if opts.total ~= nil and not (type(opts.total) == "number" and opts.total >= 0) then
    bad("options.total must be a non-negative number")
  end
  if opts.onProgress ~= nil and type(opts.onProgress) ~= "function" then
    bad("options.onProgress must be a function")
  end
end

-- src: a list, or a function returning the next input (nil: no more).
-- opts: as pool:imap's. how (for the command): run, the runner's function
-- ("default"); pack(task, rec), which adds fields to a chunk's task;
-- target_ms, the run time an automatic chunk aims at (TARGET_MS); and
-- blocks: src(n, exact) returns a chunk's task (what the runner needs,
-- holding n inputs or, unless exact, fewer) and its count, and blocks(task)
-- its inputs as a list, each a task's input alone (a chunk that failed as a
-- whole is run again one input per task).
function M.stream(pool, src, opts, how)
  opts = opts or {}
  if type(opts) ~= "table" then bad("options must be a table") end
  check(opts)
  local nextv, total
  if type(src) == "table" then
    local i, n = 0, #src
    total = n
    nextv = function()
      if i >= n then return nil end
      i = i + 1
      return src[i]
    end
  elseif type(src) == "function" then
    nextv = src
  else
    bad("expects a list or an iterator function")
  end
  local threads = pool.options.maxThreads
  local s = setmetatable({
    pool = pool, next = nextv, total = opts.total or total, opts = opts,
    ordered = opts.ordered ~= false, window = opts.window or 4 * threads,
    chunk = opts.chunk or 1, auto = opts.chunk == nil, threads = threads,
    order = {}, done = {}, pulled = 0, settled = 0, eof = false,
    pack = how and how.pack, blocks = how and how.blocks,
    target_ms = how and how.target_ms or TARGET_MS,
    runner = { filename = M.RUNNER, name = how and how.run or "default",
               signal = opts.signal },
    run_t0 = nil, unseen = 0, last_progress = now(), progress_done = -1,
  }, Stream)
  -- the handler the chunks name: a run's options, or the pool's default
  local po = pool.options
  if opts.handler then s.h = opts.handler
  elseif opts.filename or opts.name then
    s.f, s.m = opts.filename or po.filename, opts.name or po.name
  elseif po.handler then s.h = po.handler
  else s.f, s.m = po.filename, po.name end
  if not s.h and not s.f then
    error(luapool._error("load_error", "filename must be provided to run() or in options object"), 2)
  end
  return s
end

-- Chunk size from the pool's run times since the last look, taken after
-- every LOOK_EVERY tasks (fewer looks cost less, and average out a task
-- that waited for a core).
function Stream:adjust()
  local t0 = self.run_t0
  self.unseen = self.unseen + 1
  if t0 and self.unseen < LOOK_EVERY then return end
  local st = self.pool._core and self.pool._core:stats("run")
  if not st or st.count == 0 then return end
  local sum, count = st.mean * st.count, st.count
  self.unseen = 0
  self.run_t0 = { sum = sum, count = count, items = self.settled }
  if not t0 then return end
  local items = self.settled - t0.items
  if items <= 0 then return end
  local per_item = (sum - t0.sum) / items
  local c = per_item > 0 and math.floor(self.target_ms / per_item) or MAX_CHUNK
  if self.total then c = math.min(c, math.floor(self.total / (4 * self.threads))) end
  self.chunk = math.max(1, math.min(MAX_CHUNK, c))
end

-- Submits a record's task; a value that cannot cross, or a full queue that
-- does not empty, fails the record rather than the stream.
function Stream:submit(rec)
  local o = self.opts
  local task = rec.items  -- the inputs at 1..n, and what the runner needs
  task.n, task.h, task.f, task.m = rec.n, self.h, self.f, self.m
  if self.pack then self.pack(task, rec) end
  self.runner.timeout = o.timeout and o.timeout * rec.n
  local pool = self.pool
  while true do
    local ok, t = pcall(pool.run, pool, task, self.runner)
    if ok then
      rec.task = t
      t:onDone(function() self:settle(rec) end)
      return
    end
    if not luapool.isError(t) then error(t, 0) end  -- not ours: an interrupt, say
    if t.code ~= "queue_full" or pool._npending == 0 then
      rec.err = t
      self:settle(rec)
      return
    end
    pool:poll(math.huge)
  end
end

function Stream:settle(rec)
  if self.stopped then return end
  rec.settled = true
  local t = rec.task
  local failure = t and t:_failure()
  if failure then rec.err = failure end
  -- lua.c's Ctrl-C, raised while the core copied a result in: the caller's
  if rec.err and tostring(rec.err.message):find("interrupted!$") then error("interrupted!", 0) end
  if rec.err and rec.n > 1 and RETRY[rec.err.code] and not self.stopped then
    self:split(rec)
    return
  end
  if not rec.err then
    rec.values = { t:_values() }
    if rec.values[3] then  -- the runner could not run the chunk
      local f = rec.values[3]
      rec.err, rec.values = luapool._error(f.code, f.message), nil
    end
  end
  self.settled = self.settled + rec.n
  if not self.ordered then self.done[#self.done + 1] = rec end
  if self.auto and not rec.err then self:adjust() end
  self:progress(false)
end

-- Replaces a chunk by one record per input, in its place.
function Stream:split(rec)
  local pos
  for i, r in ipairs(self.order) do if r == rec then pos = i break end end
  local inputs = self.blocks and self.blocks(rec.items) or rec.items
  local parts = {}
  for i = 1, rec.n do
    parts[i] = { first = rec.first + i - 1, n = 1, items = { inputs[i] } }
  end
  if pos then
    table.remove(self.order, pos)
    for i = rec.n, 1, -1 do table.insert(self.order, pos, parts[i]) end
  else
    for i = 1, rec.n do self.order[#self.order + 1] = parts[i] end
  end
  for i = 1, rec.n do self:submit(parts[i]) end
end

function Stream:progress(final)
  local fn = self.opts.onProgress
  if not fn or self.settled == self.progress_done then return end
  local t = now()
  if final or t - self.last_progress >= PROGRESS_MS then
    self.last_progress, self.progress_done = t, self.settled
    fn(self.settled, self.total)
  end
end

-- Pulls inputs into new chunks while fewer than `window` are unconsumed.
function Stream:fill()
  while not self.eof and not self.stopped and #self.order < self.window do
    local items, n, first = {}, 0, self.pulled + 1
    if self.blocks then
      items, n = self.next(self.chunk, not self.auto)
      if items == nil then self.eof, items, n = true, {}, 0 end
    end
    for _ = n + 1, self.blocks and 0 or self.chunk do
      local v = self.next()
      if v == nil then self.eof = true break end
      n = n + 1
      items[n] = v
    end
    if n == 0 then break end
    self.pulled = self.pulled + n
    local rec = { first = first, n = n, items = items }
    self.order[#self.order + 1] = rec
    self:submit(rec)
  end
end

-- The next settled record, taken off the stream; nil at the end. wait(ms)
-- may bound a wait (the command redraws its progress bar meanwhile): then
-- false means nothing was ready yet.
function Stream:take(ms)
  self:fill()
  local pool = self.pool
  local deadline = ms and now() + ms
  while true do
    local rec
    if self.ordered then
      rec = self.order[1]
      if rec and not rec.settled then rec = nil end
      if rec then table.remove(self.order, 1) end
    elseif self.done[1] then
      rec = table.remove(self.done, 1)
      for i, r in ipairs(self.order) do if r == rec then table.remove(self.order, i) break end end
    end
    if rec then
      if rec.err and self.opts.failFast then self:stop() end
      self:fill()
      return rec
    end
    if #self.order == 0 then
      self:progress(true)
      return nil
    end
    local left = deadline and deadline - now() or math.huge
    if deadline and left <= 0 then return false end
    -- callbacks already due settle records without blocking
    if pool:poll(0) == 0 then pool:poll(left) end
  end
end

-- Stops pulling and cancels every chunk in flight.
function Stream:stop()
  if self.stopped then return end
  self.stopped = true
  for _, r in ipairs(self.order) do
    if r.task then r.task:cancel() end
  end
  self.order, self.done = {}, {}
end

-- pool:imap(src [, options]): for i, value, err in pool:imap(src) do ... end
function M.imap(pool, src, opts)
  local s = M.stream(pool, src, opts)
  local rec, k = nil, 0
  local function iter()
    while true do
      if rec and k < rec.n then
        k = k + 1
        local i = rec.first + k - 1
        if rec.err then
          local e = rec.err
          if rec.n > 1 then  -- one error object per input
            e = luapool._error(e.code, e.message, e.value, e.traceback, e.workerId)
          end
          e.index = i
          if s.opts.failFast then error(e, 2) end
          return i, nil, e
        end
        local errs = rec.values[2]
        local ei = errs and errs[k]
        if ei then
          local e = luapool._error("task_error", ei[1], ei[2], ei[3], ei[4])
          e.index = i
          if s.opts.failFast then s:stop() error(e, 2) end
          return i, nil, e
        end
        return i, rec.values[1][k]
      end
      rec, k = s:take(), 0
      if not rec then return nil end
    end
  end
  -- Lua 5.4 closes the fourth value when a loop ends early: cancel the rest.
  local closer = setmetatable({}, { __close = function() s:stop() end })
  return iter, nil, nil, closer
end

return M
