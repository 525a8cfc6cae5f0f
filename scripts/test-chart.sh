#!/usr/bin/env bash
# The Helm chart and container tests (part of ./scripts/test.sh; runnable alone):
#   * strict `helm lint` and rendering through the Helm v4 SDK (PyPI: helm-python-sdk), for
#     several values sets; strict Kubernetes schema validation (kubernetes-validate); promtool
#     on the rendered PrometheusRule;
#   * render-and-run: the StatefulSet's containers in Docker with the headless Service's DNS
#     names; the cluster forms, serves a transaction (the chart's test pod), scales up and down;
#   * container chaos: the chaos workload under docker kill / pause / network disconnect;
#   * the compose setup (deploy/compose): up, a transaction through its ports, Prometheus
#     scraping every node with the alert rules loaded, down.
# Needs Docker, Python 3.11 and the debug build (`cargo build --workspace --bins`).
#   CHAOS_SEED=7 CHAOS_DURATION=2m ./scripts/test-chart.sh     # a longer, reproducible chaos run
set -euo pipefail
cd "$(dirname "$0")/.."

command -v docker >/dev/null || { echo "error: docker is required for the chart tests" >&2; exit 1; }
command -v promtool >/dev/null || { echo "error: promtool is required (apt-get install prometheus)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "error: the Docker engine is not reachable" >&2; exit 1; }

venv=target/chart-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
  helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.3

# The compose test runs `docker compose` (the v2 plugin) where it exists, else `docker-compose`;
# with neither, Debian's docker-compose package is installed (no recommended packages).
if docker compose version >/dev/null 2>&1; then
  export TXMQ_COMPOSE="docker compose"
else
  if ! command -v docker-compose >/dev/null 2>&1; then
    echo "installing Debian's docker-compose package (no recommended packages) for the compose test"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends docker-compose; }; then
      echo "error: neither 'docker compose' nor 'docker-compose' is available, and docker-compose could not be installed" >&2
      exit 1
    fi
  fi
  export TXMQ_COMPOSE="docker-compose"
fi
echo "compose test: $TXMQ_COMPOSE ($($TXMQ_COMPOSE version 2>/dev/null | head -1))"

cargo build -p txmq-broker --bin txmq -p txmq-cluster-tests --bin chaos
PROFILE=debug TAG=txmq:test PROM_TAG=txmq-prometheus:test ./scripts/build-image.sh

export TXMQ_IMAGE=txmq:test
export TXMQ_PROMETHEUS_IMAGE=txmq-prometheus:test
export TXMQ_BIN="$PWD/target/debug/txmq"
export CHAOS_BIN="$PWD/target/debug/chaos"
cd helm/tests
# The images are the tests' own: removed afterwards, whatever the outcome.
status=0
"../../$venv/bin/python" -m unittest -v test_chart test_containers test_compose || status=$?
for image in "$TXMQ_IMAGE" "$TXMQ_PROMETHEUS_IMAGE"; do
  docker image rm -f "$image" >/dev/null 2>&1 && echo "removed the test image $image"
done
exit "$status"
