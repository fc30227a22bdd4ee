#!/bin/sh
# Runs every suite, keeps each one's log under build/, and adds up busted's
# summaries into one closing line: "N passed, N failed".
cd "$(dirname "$0")/.."
mkdir -p build
passed=0 failed=0 pending=0
for suite in luajit process lua54 lua51 asan tsan rock; do
  log=build/test-$suite.log
  printf '== %s\n' "$suite"
  make --no-print-directory "test-$suite" >"$log" 2>&1
  rc=$?
  # a suite may run busted more than once (the rock: LuaJIT and 5.4)
  line=$(grep -E '^[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" |
         awk '{s+=$1; f+=$4; e+=$7; p+=$10} END {if (NR) printf "%d successes / %d failures / %d errors / %d pending\n", s, f, e, p}')
  if [ -z "$line" ]; then
    tail -n 40 "$log"
    echo "$suite: no test summary (exit $rc); counted as 1 failure"
    failed=$((failed + 1))
    continue
  fi
  set -- $line
  s=$1 f=$4 e=$7 p=${10}
  passed=$((passed + s)) failed=$((failed + f + e)) pending=$((pending + p))
  echo "$line"
  if [ $((f + e)) -gt 0 ] || [ $rc -ne 0 ]; then
    grep -E -A 12 '^(Failure|Error) ->' "$log" | head -n 80
    grep -E -A 30 'WARNING: ThreadSanitizer|ERROR: AddressSanitizer|runtime error:' "$log" | head -n 60
    if [ $((f + e)) -eq 0 ]; then
      echo "$suite: exit $rc with no failing spec (a sanitizer report?); counted as 1 failure"
      failed=$((failed + 1))
    fi
  fi
done
echo "$pending pending (specs that do not apply to that Lua, e.g. <close> before 5.4)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
