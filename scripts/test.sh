#!/bin/sh
# Runs every suite (`make test-<suite>`), keeps each one's log under build/,
# and adds up their results into one closing line: "N passed, N failed".
# A busted suite counts its specs; a check (luacheck, a soak) counts as one.
cd "$(dirname "$0")/.."
mkdir -p build
passed=0 failed=0 pending=0

suites="luacheck luajit process lua51 lua52 lua53 lua54 process-lua54 process-lua51 asan tsan
  process-asan process-tsan valgrind soak-asan soak-tsan fuzz rock"
check_suites="luacheck soak-asan soak-tsan fuzz"  # the others run busted
limit=${SUITE_TIMEOUT:-1200}  # seconds; the longest suite takes about 2 minutes

# What a failed suite's log says, in short.
excerpt() {
  grep -E -A 12 '^(Failure|Error) ->' "$1" | head -n 80
  grep -E -A 30 'WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:' "$1" | head -n 60
  grep -E '^==[0-9]+== ' "$1" | head -n 60  # valgrind
}

# busted_suite NAME LOG RC: adds up busted's summaries (a suite may run busted
# more than once: the rock runs it for LuaJIT, 5.4 and `luarocks test`).
busted_suite() {
  line=$(grep -E '^[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$2" |
         awk '{s+=$1; f+=$4; e+=$7; p+=$10} END {if (NR) printf "%d successes / %d failures / %d errors / %d pending\n", s, f, e, p}')
  if [ -z "$line" ]; then
    tail -n 40 "$2"
    echo "$1: no test summary (exit $3); counted as 1 failure"
    failed=$((failed + 1))
    return
  fi
  set -- "$1" "$2" "$3" $line
  s=$4 f=$7 e=${10} p=${13}
  passed=$((passed + s)) failed=$((failed + f + e)) pending=$((pending + p))
  echo "$line"
  if [ $((f + e)) -gt 0 ] || [ "$3" -ne 0 ]; then
    excerpt "$2"
    if [ $((f + e)) -eq 0 ]; then
      echo "$1: exit $3 with no failing spec (a sanitizer or valgrind report?); counted as 1 failure"
      failed=$((failed + 1))
    fi
  fi
}

# check_suite NAME LOG RC: one pass or one failure; its last line is its summary.
check_suite() {
  if [ "$3" -eq 0 ]; then
    tail -n 1 "$2"
    passed=$((passed + 1))
  else
    tail -n 40 "$2"
    excerpt "$2"
    echo "$1: exit $3; counted as 1 failure"
    failed=$((failed + 1))
  fi
}

for suite in $suites; do
  log=build/test-$suite.log
  printf '== %s\n' "$suite"
  start=$(date +%s)
  # a suite that hangs is stopped (with what it started) and counted failed
  timeout -k 30 "$limit" make --no-print-directory "test-$suite" >"$log" 2>&1
  rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "$suite: stopped after $limit s (SUITE_TIMEOUT)" >>"$log"
  fi
  case " $check_suites " in
    *" $suite "*) check_suite "$suite" "$log" $rc ;;
    *) busted_suite "$suite" "$log" $rc ;;
  esac
  echo "($suite: $(($(date +%s) - start)) s)"
done
echo "$pending pending (specs that do not apply to that Lua, e.g. <close> before 5.4)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
