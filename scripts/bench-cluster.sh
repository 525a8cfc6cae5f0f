#!/usr/bin/env bash
# Starts an N-node txmq cluster from the release build on loopback, runs `txmq bench` scenarios
# against it, and prints one JSON line per scenario, the CPU time the hypervisor stole meanwhile,
# and each node's CPU seconds, RSS and disk use.
#
#   ./scripts/bench-cluster.sh                       # 3 nodes, the default scenarios
#   NODES=5 DURATION=20s ./scripts/bench-cluster.sh
#   SCENARIOS="publish:256:256 txn:256:256" ./scripts/bench-cluster.sh   # scenario:concurrency:size
#   SCENARIOS="publish:256:256:batching" ./scripts/bench-cluster.sh     # a 4th field: bench flags,
#   SCENARIOS="txn:256:256:batching,rate=15000" ./scripts/bench-cluster.sh # comma-separated, name[=value]
#   SERVE_ARGS="--cache-bytes 16777216" ./scripts/bench-cluster.sh        # extra `txmq serve` flags
#   BIN=/tmp/txmq-old ./scripts/bench-cluster.sh       # a binary built elsewhere (no build)
#   WORKERS=2 ./scripts/bench-cluster.sh                # worker threads per node (default: cores ÷ nodes,
#                                                       # at least 1; 0: the binary's default, one per core)
set -euo pipefail
cd "$(dirname "$0")/.."
NODES="${NODES:-3}"
DURATION="${DURATION:-20s}"
SCENARIOS="${SCENARIOS:-publish:1:256 publish:16:256 publish:64:256 publish:256:256 publish:256:4096 txn:256:256 consume:64:256}"
BASE="${BASE_PORT:-19870}"
# The nodes share this machine's cores (see `--worker-threads` in docs/configuration.md).
WORKERS="${WORKERS:-$(( $(nproc) / NODES > 0 ? $(nproc) / NODES : 1 ))}"

# BIN=path runs another build (say, to compare two commits back to back) without building.
if [ -z "${BIN:-}" ]; then
  cargo build --release -p txmq-broker --bin txmq >&2
  BIN="$PWD/target/release/txmq"
fi
# A previous run's deleted data (1-2 GB) may still be being written back, freed and, on a
# `-o discard` mount, discarded: let that finish before measuring.
sync
DIR="$(mktemp -d -t txmq-bench-XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

initial=""
for i in $(seq 1 "$NODES"); do initial+="${initial:+,}$i=127.0.0.1:$((BASE + 10 * i + 1))"; done
endpoints=""
for i in $(seq 1 "$NODES"); do
  c=$((BASE + 10 * i)); endpoints+="${endpoints:+,}127.0.0.1:$c"
  "$BIN" serve --node-id "$i" --data-dir "$DIR/n$i" --client-addr "127.0.0.1:$c" \
    --peer-addr "127.0.0.1:$((c + 1))" --metrics-addr "127.0.0.1:$((c + 2))" \
    --initial-cluster "$initial" $([ "$WORKERS" = 0 ] || echo "--worker-threads $WORKERS") \
    --log-level warn ${SERVE_ARGS:-} >"$DIR/n$i.log" 2>&1 &
  pids+=("$!")
done
export TXMQ_ENDPOINTS="$endpoints"
for _ in $(seq 1 100); do "$BIN" cluster status --output json 2>/dev/null | grep -q '"leader_id":[1-9]' && break; sleep 0.2; done

# CPU time the hypervisor gave to others (steal, /proc/stat field 9): on a shared VM it explains
# much of the run-to-run variance, so every run reports it.
steal_ticks() { awk '/^cpu / {print $9}' /proc/stat; }
steal_start=$(steal_ticks); wall_start=$(date +%s)
for s in $SCENARIOS; do
  IFS=: read -r scenario concurrency size flag_list <<<"$s"
  flags=()
  IFS=, read -ra named <<<"${flag_list:-}"
  for f in "${named[@]}"; do
    if [[ "$f" == *=* ]]; then flags+=("--${f%%=*}" "${f#*=}"); else flags+=("--$f"); fi
  done
  topic="bench-$scenario-$size"
  [ "$scenario" = consume ] && topic="bench-publish-$size"
  "$BIN" bench "$scenario" --topic "$topic" --duration "$DURATION" --concurrency "$concurrency" --size "$size" "${flags[@]}" --output json 2>/dev/null
done
echo "{\"machine\": \"$(nproc) cpus\", \"workers_per_node\": $WORKERS, \"wall_s\": $(( $(date +%s) - wall_start )), \"steal_s\": $(( ($(steal_ticks) - steal_start) / $(getconf CLK_TCK) ))}"
for i in $(seq 1 "$NODES"); do
  pid="${pids[$((i - 1))]}"
  rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  # CPU seconds the node used over the whole run (user + system; fields 14 and 15 of stat).
  cpu_s=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$pid/stat")
  disk_kb=$(du -sk "$DIR/n$i" | cut -f1)
  parts=""
  for part in raft-log queues txn-journal db snapshots; do
    kb=$(du -sk "$DIR/n$i/$part" 2>/dev/null | cut -f1)
    parts+=", \"${part//-/_}_mib\": $(( ${kb:-0} / 1024 ))"
  done
  # Raft entries this node proposed as leader (each carries a batch of client operations): the
  # scenarios' operations divided by these is the batch size, the lever of CPU per operation.
  metrics=$(curl -sf "http://127.0.0.1:$((BASE + 10 * i + 2))/metrics" 2>/dev/null || true)
  # The value of the series named exactly $1 (name and labels), empty if the node has none.
  metric() { awk -v series="$1" '$1 == series {print $2}' <<<"$metrics"; }
  entries=$(metric 'txmq_raft_proposals_total{outcome="committed"}')
  # The log's fsyncs, and how many took over 16 ms: a slow sync holds up every write waiting on
  # it, so these say how much of a run's tail the disk made (steadier than the p99 itself).
  fsyncs=$(metric txmq_raft_log_fsync_duration_seconds_count)
  fast=$(metric 'txmq_raft_log_fsync_duration_seconds_bucket{le="0.016"}')
  # Purges of the log after snapshots: openraft's core waits for each (see docs/monitoring.md).
  purges=$(metric txmq_raft_log_purge_duration_seconds_count)
  purge_ms=$(awk -v s="$(metric txmq_raft_log_purge_duration_seconds_sum)" 'BEGIN {printf "%.0f", s * 1000}')
  echo "{\"node\": $i, \"cpu_s\": $cpu_s, \"rss_mib\": $((rss_kb / 1024)), \"disk_mib\": $((disk_kb / 1024)), \"entries_proposed\": ${entries:-0}, \"fsyncs\": ${fsyncs:-0}, \"fsyncs_over_16ms\": $(( ${fsyncs:-0} - ${fast:-0} )), \"purges\": ${purges:-0}, \"purge_ms\": ${purge_ms:-0}$parts}"
done
