#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz / libFuzzer) of txmq's decoders and state machine:
#   decode_entry   Raft entries and commands from arbitrary bytes (log segments, peer payloads)
#   decode_stored  log/queue frames, message rows, transaction rows, snapshot files, state rows
#   state_machine  operation sequences with restarts from stored rows, against a steady replica
#
#   ./scripts/fuzz.sh            # every target for 60 s
#   ./scripts/fuzz.sh 600        # every target for 10 minutes
#   ./scripts/fuzz.sh 30 state_machine
#
# Seed corpora are in fuzz/seeds/<target> (kept small, in the repo); each run works on a copy, so
# the repo does not grow. A crash stops the script, leaves its input under fuzz/artifacts/ and
# prints the command that replays it. Installs cargo-fuzz if missing; runs on stable Rust with
# RUSTC_BOOTSTRAP=1 (libFuzzer's coverage flags are unstable), without a sanitizer (Rust code
# here has no `unsafe` to check; a panic or an abort is the failure).
set -euo pipefail
cd "$(dirname "$0")/.."
each="${1:-60}"
only="${2:-}"
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz 0.13.2 (cargo install --locked)"
  cargo install cargo-fuzz --locked --version 0.13.2
fi
cd fuzz
cargo fuzz build --sanitizer none
work="$(mktemp -d -t txmq-fuzz-XXXXXX)"
trap 'rm -rf "$work"' EXIT
total=0
for target in $(cargo fuzz list); do
  [ -z "$only" ] || [ "$only" = "$target" ] || continue
  mkdir -p "$work/$target"
  cp seeds/"$target"/* "$work/$target"/ 2>/dev/null || true
  log="$work/$target.log"
  if ! cargo fuzz run --sanitizer none "$target" "$work/$target" -- \
      -max_total_time="$each" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "error: fuzz target $target failed; replay: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $target <artifact above>)" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  echo "fuzz $target: ${runs:-0} executions in ${each}s, no crash"
  total=$((total + ${runs:-0}))
done
echo "fuzz: $total executions in all"
