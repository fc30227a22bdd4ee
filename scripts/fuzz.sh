#!/bin/sh
# Builds the libFuzzer target (fuzz/fuzz_wire.c) with clang, ASan and UBSan,
# and runs it for SECONDS (default 60) over a corpus kept in build/fuzz/.
# Prints libFuzzer's final stats; exits non-zero on a crash, leak or timeout.
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=build/fuzz
mkdir -p "$out/corpus"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -D_POSIX_C_SOURCE=200809L -Isrc $(pkg-config --cflags luajit) \
  fuzz/fuzz_wire.c src/codec.c src/wire.c src/buffer.c src/shared.c src/cdata.c \
  $(pkg-config --libs luajit) -lm -o "$out/fuzz_wire"
# seeds: a frame of each kind the host reads, and small values
if [ -z "$(ls -A "$out/corpus")" ]; then
  printf '\001\005\001\000\000\001\000\000\000\003\000\000\000abc' >"$out/corpus/frame"
  printf '\002\006\000\000\000\000\000\000\000\002\000\000\000\005\001' >"$out/corpus/read"
  printf '\000\006\002\000\000\000\001\000\000\000\003\001\005\002hi\014\001k\002\006\000\000\000\000\001\000\000\000\020\000\001' >"$out/corpus/table"
  # keep-all, then a list of 2 (an int, an empty table), a pair k = true, its nil end
  printf '\000\023\021\002\003\002\006\000\000\000\000\000\000\000\000\005\001k\002\000' >"$out/corpus/list"
  # a list in a list in a list: the third is refused
  printf '\000\021\001\021\001\021\001\003\002\000\000\000' >"$out/corpus/list-deep"
fi
# fuzz/regressions: inputs that once failed, run first (crashes go to $out)
"$out/fuzz_wire" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=1024 \
  -max_len=4096 -artifact_prefix="$out/" "$out/corpus" fuzz/regressions 2>&1 | tee "$out/fuzz.log" | grep -E "^(stat::|Done|==|SUMMARY|INFO: -max)" || true
grep -q "^Done" "$out/fuzz.log"
