#!/usr/bin/env bash
# The deterministic simulator (crate sim/, binary txmq-sim), on a release build:
#   * SEEDS seeds of 3-node clusters and SEEDS/2 of 5-node clusters (default 400), each a
#     workload under a random fault schedule, judged by the checker;
#   * determinism: one seed run twice gives the same trace hash;
#   * every planted bug must be caught within 300 seeds (a simulator that misses a known bug
#     proves nothing).
# A failing seed prints its first broken rule, its fault schedule and the command replaying it.
# Long run: scripts/sim.sh 10000
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-400}"

cargo build --release -p txmq-sim
sim=target/release/txmq-sim
hash_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["trace_hash"])'; }

echo "--- $seeds seeds, 3 nodes"
"$sim" run --seeds "$seeds" --nodes 3
echo "--- $((seeds / 2)) seeds, 5 nodes"
"$sim" run --seeds "$((seeds / 2))" --start-seed 1000000 --nodes 5

echo "--- determinism"
first=$("$sim" run --seed 42 --output json | hash_of)
again=$("$sim" run --seed 42 --output json | hash_of)
if [ "$first" != "$again" ]; then
  echo "error: seed 42 gave trace hashes $first and $again: the simulation is not deterministic" >&2
  exit 1
fi
echo "seed 42 twice: trace hash $first both times"

echo "--- planted bugs"
for bug in $("$sim" bugs); do
  if out=$("$sim" run --bug "$bug" --seeds 300 --stop-at-failure --output json 2>/dev/null); then
    echo "error: the planted bug $bug was not caught in 300 seeds: $out" >&2
    exit 1
  fi
  python3 - "$bug" "$out" <<'PY'
import json, sys
bug, summary = sys.argv[1], json.loads(sys.argv[2])
if not summary["failed"]:
    sys.exit(f"error: the run with {bug} failed without a failing seed: {summary}")
print(f"{bug}: caught at seed {summary['failed'][0]} after {summary['seeds']} seeds")
PY
done
