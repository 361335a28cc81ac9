#!/usr/bin/env bash
# scripts/readme-contract.sh: the README's two commands, tried as a new user
# would.
#
#   scripts/readme-contract.sh command run|test   print the README's command
#   scripts/readme-contract.sh check-run          run the run command in a
#                                                 fresh clone and stop it
#
# The commands are the first line of the ```sh block that follows the
# markers <!-- readme:run --> and <!-- readme:test --> in README.md, so CI
# runs exactly the words a reader copies.
#
# check-run clones the repository's committed HEAD into a new temporary
# directory, runs the run command there exactly as written (relative paths
# and default directory included), waits until the demo prints its summary
# and starts serving, sends SIGINT to it (what Ctrl-C does), and expects it
# to stop with exit 0 within a grace period. The clone is removed on exit.
#
# Environment:
#   CONTRACT_TIMEOUT  seconds to wait for the summary (default 900)
#   CONTRACT_STOP     seconds to wait for a clean stop after SIGINT (default 60)
#   CONTRACT_KEEP=1   keep the clone and its output for inspection
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

die() { printf 'readme-contract: FAILED: %s\n' "$*" >&2; exit 1; }

# readme_command MARKER prints the first line of the sh block after MARKER.
readme_command() {
  awk -v marker="<!-- readme:$1 -->" '
    $0 == marker { found = 1; next }
    found && /^```sh$/ { inblock = 1; next }
    inblock { print; exit }
  ' "$ROOT/README.md"
}

case "${1:-}" in
command)
  cmd=$(readme_command "${2:?run or test}")
  [ -n "$cmd" ] || die "README.md has no command after <!-- readme:${2} -->"
  printf '%s\n' "$cmd"
  ;;
check-run)
  cmd=$(readme_command run)
  [ -n "$cmd" ] || die "README.md has no command after <!-- readme:run -->"
  timeout=${CONTRACT_TIMEOUT:-900}
  stop=${CONTRACT_STOP:-60}
  work=$(mktemp -d "${TMPDIR:-/tmp}/fedrisk-readme.XXXXXX")
  pid=""
  cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    if [ "${CONTRACT_KEEP:-}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
  }
  trap cleanup EXIT
  git clone -q "$ROOT" "$work/fedrisk"
  cd "$work/fedrisk"
  echo "== readme-contract: in a fresh clone ($work/fedrisk): $cmd"
  start=$(date +%s)
  # A process group of its own, so SIGINT reaches the shell and the program
  # it runs, as Ctrl-C in a terminal does.
  setsid bash -c "$cmd" >"$work/out.txt" 2>&1 &
  pid=$!
  until grep -q "Serving until Ctrl-C" "$work/out.txt"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$work/out.txt"
      wait "$pid" && rc=0 || rc=$?
      die "the run command stopped (exit $rc) before its summary"
    fi
    if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
      cat "$work/out.txt"
      die "no summary within ${timeout}s"
    fi
    sleep 1
  done
  ready=$(( $(date +%s) - start ))
  echo "== readme-contract: summary after ${ready}s (build included); sending SIGINT"
  kill -INT -- "-$pid"
  waited=0
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$stop" ]; do sleep 1; waited=$((waited + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    tail -20 "$work/out.txt"
    die "still running ${stop}s after SIGINT"
  fi
  wait "$pid" && rc=0 || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -30 "$work/out.txt"
    die "exit $rc after SIGINT, want 0"
  fi
  grep -E '^\[[0-9]/[0-9]\]|✓' "$work/out.txt" | sed 's/^/   /' || true
  echo "== readme-contract: ok: summary, then a clean stop (exit 0) ${waited}s after SIGINT"
  ;;
*)
  echo "usage: $0 command run|test | check-run" >&2
  exit 2
  ;;
esac
