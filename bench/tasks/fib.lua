-- CPU task: naive recursive Fibonacci (same algorithm as bench/node/tasks/fib.mjs).
local function fib(n)
  if n < 2 then return n end
  return fib(n - 1) + fib(n - 2)
end
-- Warm-up when the file is loaded, in every Lua state that loads it (worker or main).
-- LuaJIT's traces for this recursion depend on how it first gets hot: started straight
-- on fib(27) they differ from state to state and so does the speed (up to 2x); many
-- small calls first give the same traces every time.
for _ = 1, 200 do fib(10) end
return fib
