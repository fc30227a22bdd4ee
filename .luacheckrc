-- luacheck (Debian's lua-check): `make test-luacheck`, a suite of scripts/test.sh.
-- luapool runs on LuaJIT and PUC Lua 5.1-5.4, and its code tests for what a
-- version lacks (`table.unpack or unpack`, `jit`), so the standard is "max":
-- the globals of any of them.
std = "max"
-- The code wraps at about 100 columns; a few spec and bench lines with long
-- literals or format strings run to 133.
max_line_length = 140
exclude_files = {
  "spec/fixtures/syntax_error.lua",  -- a syntax error on purpose (load_error specs)
  "bench/node",
  "build",
}

files["spec"] = { std = "max+busted" }
-- Task files run in worker states, where busted is not loaded.
files["spec/fixtures"] = { std = "max" }
-- `luarocks test` runs this file as a script and gives busted its arguments.
files["spec/run.lua"] = { std = "max+busted", globals = { "arg" } }
-- Globals that functions sent to workers read and set, to show that each
-- state keeps its own.
files["spec/codec_spec.lua"] = {
  std = "max+busted",
  globals = { "LUAPOOL_CODEC_MARK", "LUAPOOL_CODEC_WORKER" },
}
-- Each libuv thread keeps the loaded task file in a global of its own state.
files["bench/luv_bench.lua"] = { globals = { "BENCH_FIB" } }

-- Loops that allocate until stopped: the table they fill is never read, on
-- purpose (out_of_memory, interrupts).
files["spec/fixtures/lc_state.lua"] = { ignore = { "241/t" } }
files["spec/fixtures/tp_leak.lua"] = { ignore = { "241/array" } }
files["spec/fixtures/cli_task.lua"] = { ignore = { "241/t" } }
files["examples/progress.lua"] = { ignore = { "241/t" } }
-- lua-language-server annotations: empty functions and classes that only
-- declare names, never run.
files["lua/luapool/meta.lua"] = { ignore = { "212", "241" } }
