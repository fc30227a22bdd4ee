// CPU task: naive recursive Fibonacci (same algorithm as bench/tasks/fib.lua, which
// warms up the same way when loaded; V8 does not need it, it is here for symmetry).
function fib(n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
for (let i = 0; i < 200; i++) fib(10);
export default function (n) { return fib(n); }
export { fib };
