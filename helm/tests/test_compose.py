"""The compose setup (deploy/compose/compose.yaml) as a user runs it: `docker compose up` of
three txmq containers and Prometheus, then the cluster serves a transaction through its
published ports (`txmq cluster check`), every node answers, and Prometheus scrapes all three
nodes with the alert rules loaded; `docker compose down -v` at the end, whatever the outcome.

The compose command is $TXMQ_COMPOSE (scripts/test-chart.sh sets it: `docker compose`, or the
older `docker-compose` where the plugin is missing); the images are $TXMQ_IMAGE and
$TXMQ_PROMETHEUS_IMAGE."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import unittest
import urllib.parse
import urllib.request
from pathlib import Path

from chart import tool
from test_containers import free_port, wait_for

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "compose" / "compose.yaml"


def prometheus_query(port: int, query: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]["result"]


class ComposeCluster(unittest.TestCase):
    def setUp(self):
        command = os.environ.get("TXMQ_COMPOSE")
        if not command:
            self.fail("TXMQ_COMPOSE is not set: run through scripts/test-chart.sh, which finds or installs a compose tool")
        self.ports = [free_port() for _ in range(3)]
        self.prometheus_port = free_port()
        self.project = f"txmq-compose-{secrets.token_hex(3)}"
        self.compose = [*shlex.split(command), "-p", self.project, "-f", str(COMPOSE_FILE)]
        self.env = {
            **os.environ,
            "TXMQ_IMAGE": os.environ.get("TXMQ_IMAGE", "txmq:test"),
            "TXMQ_PROMETHEUS_IMAGE": os.environ.get("TXMQ_PROMETHEUS_IMAGE", "txmq-prometheus:test"),
            "TXMQ_PROMETHEUS_PORT": str(self.prometheus_port),
            **{f"TXMQ_PORT_{i + 1}": str(p) for i, p in enumerate(self.ports)},
        }
        self.passed = False
        self.addCleanup(self.down)
        up = self.run_compose("up", "-d")
        self.assertEqual(up.returncode, 0, f"compose up failed:\n{up.stderr}")

    def run_compose(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.compose, *args], capture_output=True, text=True, env=self.env, timeout=300)

    def down(self):
        if not self.passed:
            print(self.run_compose("logs", "--no-color", "--tail", "40").stdout)
        down = self.run_compose("down", "-v")
        if down.returncode != 0:
            print(f"compose down failed:\n{down.stderr}")

    def txmq(self, *args: str) -> subprocess.CompletedProcess:
        endpoints = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return subprocess.run(
            [tool("txmq", "TXMQ_BIN"), *args, "--endpoints", endpoints],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def test_compose_cluster_serves_transactions_and_is_scraped(self):
        check = self.txmq("cluster", "check", "--timeout", "90s")
        self.assertEqual(check.returncode, 0, f"cluster check failed:\n{check.stdout}\n{check.stderr}")
        status = json.loads(self.txmq("cluster", "status", "--output", "json").stdout)
        voters = sorted(n["id"] for n in status["nodes"] if n["voter"])
        self.assertEqual(voters, [1, 2, 3], status)
        for port in self.ports:
            one = subprocess.run(
                [tool("txmq", "TXMQ_BIN"), "topic", "list", "--endpoints", f"127.0.0.1:{port}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            self.assertEqual(one.returncode, 0, f"node on port {port}: {one.stderr}")
            self.assertIn("txmq-check", one.stdout)
        wait_for(
            "Prometheus to scrape the three nodes",
            120,
            lambda: prometheus_query(self.prometheus_port, 'count(up{job="txmq"} == 1)') and
            prometheus_query(self.prometheus_port, 'count(up{job="txmq"} == 1)')[0]["value"][1] == "3",
        )
        url = f"http://127.0.0.1:{self.prometheus_port}/api/v1/rules"
        with urllib.request.urlopen(url, timeout=5) as r:
            groups = json.load(r)["data"]["groups"]
        self.assertTrue(groups and all(g["rules"] for g in groups), f"alert rules not loaded: {groups}")
        self.passed = True


if __name__ == "__main__":
    unittest.main()
