#!/usr/bin/env bash
# The complete test suite of txmq, runnable on a fresh machine with only the Rust toolchain:
# formatting, lints, the build, unit and property tests, storage conformance tests, and the
# multi-process cluster tests (real `txmq serve` processes on loopback ports the OS picks), the
# deterministic simulator (scripts/sim.sh: hundreds of seeded cluster runs, every planted bug),
# a short coverage-guided fuzzing run (scripts/fuzz.sh; installs cargo-fuzz), the official RocketMQ
# Python client against the RocketMQ port (installed from PyPI into a venv), and the Helm chart and
# container tests (scripts/test-chart.sh: needs Docker).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Each step's start time (UTC) is printed, so a slow run shows which step grew.
step() { printf '\n==> %s  [%s]\n' "$*" "$(date -u +%H:%M:%S)"; }

# The observability tests run a real Prometheus and promtool (Debian's `prometheus` package).
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  step "installing Debian's prometheus package (prometheus, promtool; no recommended packages) for the observability tests"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends prometheus; }; then
    echo "error: could not install the prometheus package; the observability tests need it" >&2
    exit 1
  fi
fi

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "layering and size (no module import circles; txmq-state depends on data crates only; functions of at most 70 lines)"
python3 scripts/check-module-cycles.py
python3 scripts/check-function-length.py
if cargo tree -p txmq-state -e normal --prefix none | grep -Eq '^(tokio|sled|openraft|tonic|libc) '; then
  echo "error: txmq-state must stay pure, but depends on:" >&2
  cargo tree -p txmq-state -e normal --prefix none | grep -E '^(tokio|sled|openraft|tonic|libc) ' >&2
  exit 1
fi
if grep -q '^sled' broker/Cargo.toml; then
  echo "error: txmq-broker must not depend on sled directly (the store reports what the node needs)" >&2
  exit 1
fi

# The RocketMQ compatibility tests drive txmq with the official RocketMQ 5 Python client
# (cluster-tests/tests/rocketmq.rs), installed from PyPI into a venv of its own.
ROCKETMQ_PYTHON_CLIENT="rocketmq-python-client==5.1.2"
venv=target/rocketmq-venv
if ! "$venv/bin/python" -c "import rocketmq" >/dev/null 2>&1; then
  step "installing the official RocketMQ Python client ($ROCKETMQ_PYTHON_CLIENT) in $venv"
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install -q --disable-pip-version-check "$ROCKETMQ_PYTHON_CLIENT"; then
    echo "error: could not install $ROCKETMQ_PYTHON_CLIENT; the RocketMQ compatibility tests need it" >&2
    exit 1
  fi
fi
export TXMQ_ROCKETMQ_PYTHON="$PWD/$venv/bin/python"

# ... and with the official RocketMQ Rust client (crates.io `rocketmq`), through a small driver
# outside the workspace (it pins its own dependency versions).
step "build (the official RocketMQ Rust client's driver, interop/rocketmq-rust)"
cargo build --manifest-path interop/rocketmq-rust/Cargo.toml
export TXMQ_ROCKETMQ_RUST_CLIENT="$PWD/interop/rocketmq-rust/target/debug/rocketmq-rust-interop"

step "build (the txmq binary the cluster tests run)"
cargo build --workspace --bins

step "tests (unit, property, storage, cluster)"
cargo test --workspace --no-fail-fast

step "deterministic simulation (scripts/sim.sh: 400 seeds on 3 nodes, 200 on 5, a replayed seed, every planted bug caught)"
./scripts/sim.sh 400

step "fuzzing (cargo fuzz, 20 s per target: decoders and the state machine; longer runs: scripts/fuzz.sh SECONDS)"
./scripts/fuzz.sh 20

step "Helm chart and container tests (lint, schemas, render-and-run in Docker, container chaos)"
./scripts/test-chart.sh
