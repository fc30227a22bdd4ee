-- The single-threaded loop the cli bench compares luapool with, and what GNU
-- parallel runs: luajit jsonl_inline.lua TASKFILE [FILE] (stdin without FILE).
local cjson = require "cjson"
local handler = dofile(arg[1])
local decode, encode = cjson.decode, cjson.encode
local out = io.stdout
out:setvbuf("full", 65536)
for line in (arg[2] and io.lines(arg[2]) or io.stdin:lines()) do
  out:write(encode(handler(decode(line))), "\n")
end
