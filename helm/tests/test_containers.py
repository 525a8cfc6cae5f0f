"""Render-and-run: the containers of the StatefulSet the chart renders, run in Docker exactly
(command, args, env, ports, user, read-only root, volumes) on a private network where every pod
answers to the DNS names the headless Service would give it. Then: the cluster forms and serves
a transaction (the chart's own `helm test` pod), a scale-up joins a node, the chart's
pre-upgrade hook scales down, and the chaos workload runs against the containers with docker
kill, docker pause and docker network disconnect as the nemesis."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

from chart import NAMESPACE, docker_run_args, one, render, tool

IMAGE = os.environ.get("TXMQ_IMAGE", "txmq:test")

# Short transaction timings for the chaos run (the checker's bounds come from the same numbers),
# and frequent snapshots so that restarted containers catch up through them too.
CHAOS_TXN = {"first_check_delay_ms": 1500, "check_interval_ms": 1000, "max_checks": 8, "max_lifetime_ms": 30000}
CHAOS_CONFIG = {
    "txn_first_check_delay": "1500ms",
    "txn_check_interval": "1s",
    "txn_max_checks": 8,
    "txn_max_lifetime": "30s",
    "snapshot_logs": 500,
    "logs_to_keep": 100,
    "election_timeout": "500ms",
}


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, timeout: float, check):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last = e
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


def http_status(addr: str, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


ADMIN_PASSWORD = "chart-admin-password"
SECURED = {
    "tls": {"secretName": "txmq-tls"},
    "peerTls": {"secretName": "txmq-peer-tls"},
    "auth": {"adminSecretName": "txmq-admin"},
}


class ChartCluster:
    """The chart's pods as containers; everything it creates is removed by `close()`. With
    `secured`, the Secrets of SECURED exist: certificates from `txmq certs create` naming the
    pods and the client Service, and an administrator."""

    def __init__(self, values: dict, secured: bool = False):
        tool("docker", "DOCKER")
        self.prefix = f"txmq-ct-{secrets.token_hex(3)}"
        self.network = f"{self.prefix}-net"
        base = {"image": {"repository": IMAGE.split(":")[0], "tag": IMAGE.split(":")[1]}}
        self.values = {**base, **(SECURED if secured else {}), **values}
        self.tmp = tempfile.TemporaryDirectory(prefix="txmq-chart-")
        self.pods: dict[int, dict] = {}
        self.volumes: set[str] = set()
        self.secret_dirs: dict[str, Path] = {}
        self.secret_keys: dict[str, dict[str, str]] = {}
        if secured:
            self.make_secrets()
        docker("network", "create", self.network)

    def make_secrets(self):
        """The Secrets the secured values name, as directories to bind-mount (readable by the
        pods' user, as the kubelet's secret volumes are)."""
        sts = one(self.rendered(3), "StatefulSet")
        fullname, headless = sts["metadata"]["name"], sts["spec"]["serviceName"]
        suffix = f"{NAMESPACE}.svc.{self.merged_domain()}"
        made = Path(self.tmp.name) / "certs"
        hosts = ["--host", f"*.{headless}.{suffix}", "--host", f"{fullname}.{suffix}"]
        result = subprocess.run([tool("txmq", "TXMQ_BIN"), "certs", "create", str(made), *hosts], capture_output=True, text=True)
        if result.returncode != 0:
            raise AssertionError(result.stderr)
        tls = {"tls.crt": (made / "node.pem").read_text(), "tls.key": (made / "node.key").read_text(), "ca.crt": (made / "ca.pem").read_text()}
        self.ca_file = made / "ca.pem"
        for name, files in {
            "txmq-tls": tls,
            "txmq-peer-tls": tls,
            "txmq-admin": {"username": "admin", "password": ADMIN_PASSWORD},
        }.items():
            directory = Path(self.tmp.name) / "secrets" / name
            directory.mkdir(parents=True)
            directory.chmod(0o755)
            for key, text in files.items():
                (directory / key).write_text(text)
                (directory / key).chmod(0o644)
            self.secret_dirs[name] = directory
            self.secret_keys[name] = files

    def secret_mounts(self, spec: dict) -> dict[str, list[str]]:
        """Bind mounts (read-only, at the container's mountPath) for the spec's secret volumes."""
        secret_of = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        mounts = {}
        for container in spec["containers"]:
            for m in container.get("volumeMounts", []):
                if m["name"] in secret_of:
                    source = self.secret_dirs[secret_of[m["name"]]]
                    mounts[m["name"]] = ["--mount", f"type=bind,source={source},target={m['mountPath']},readonly"]
        return mounts

    def client_env(self) -> dict[str, str]:
        """What the host's `txmq` needs to reach the cluster."""
        if not self.secret_dirs:
            return {}
        return {"TXMQ_TLS_CA": str(self.ca_file), "TXMQ_USER": "admin", "TXMQ_PASSWORD": ADMIN_PASSWORD}

    def close(self):
        for pod in list(self.pods.values()):
            docker("rm", "-f", pod["container"], check=False)
        for other in docker("ps", "-aq", "--filter", f"name={self.prefix}", check=False).stdout.split():
            docker("rm", "-f", other, check=False)
        for volume in self.volumes:
            docker("volume", "rm", "-f", volume, check=False)
        docker("network", "rm", self.network, check=False)
        self.tmp.cleanup()

    def rendered(self, replicas: int) -> dict:
        return render({**self.values, "replicaCount": replicas})

    def start_pod(self, ordinal: int, replicas: int):
        """Runs pod `<fullname>-<ordinal>` of the chart rendered with `replicas` replicas."""
        rendered = self.rendered(replicas)
        sts = one(rendered, "StatefulSet")
        fullname = sts["metadata"]["name"]
        pod_name = f"{fullname}-{ordinal}"
        pod_spec = sts["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        config_dir = Path(self.tmp.name) / f"config-{ordinal}-{replicas}"
        config_dir.mkdir()
        config_dir.chmod(0o755)
        configmap = [o for o in rendered.values() for o in o if o["kind"] == "ConfigMap"][0]
        for key, text in configmap["data"].items():
            (config_dir / key).write_text(text)
            (config_dir / key).chmod(0o644)
        volume = f"{self.prefix}-data-{pod_name}"
        self.volumes.add(volume)
        mounts = {
            "data": ["--mount", f"type=volume,source={volume},target=/data"],
            "config": ["--mount", f"type=bind,source={config_dir},target=/etc/txmq,readonly"],
            "tmp": ["--tmpfs", "/tmp:rw,size=64m"],
            **self.secret_mounts(pod_spec),
        }
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        pod = self.pods.get(ordinal) or {
            "id": ordinal + 1,
            "container": f"{self.prefix}-{ordinal}",
            "client_port": free_port(),
            "metrics_port": free_port(),
        }
        domain = f"{sts['spec']['serviceName']}.{NAMESPACE}.svc.{self.merged_domain()}"
        # The client Service's name resolves to the pods too (like the Service's virtual IP).
        service = f"{fullname}.{NAMESPACE}.svc.{self.merged_domain()}"
        pod["aliases"] = [f"{pod_name}.{domain}", service]
        run = docker_run_args(
            pod_spec,
            container,
            name=pod["container"],
            pod_name=pod_name,
            namespace=NAMESPACE,
            network=self.network,
            aliases=pod["aliases"],
            image=IMAGE,
            mounts=mounts,
            published={ports["client"]: pod["client_port"], ports["metrics"]: pod["metrics_port"]},
            secrets=self.secret_keys,
        )
        docker("rm", "-f", pod["container"], check=False)
        result = subprocess.run(run, capture_output=True, text=True)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(run)}: {result.stderr}")
        self.pods[ordinal] = pod
        return pod

    def merged_domain(self) -> str:
        return self.values.get("clusterDomain", "cluster.local")

    def remove_pod(self, ordinal: int, delete_volume: bool):
        pod = self.pods.pop(ordinal)
        docker("rm", "-f", pod["container"])
        if delete_volume:
            volume = next(v for v in self.volumes if v.endswith(f"-{ordinal}"))
            docker("volume", "rm", "-f", volume)
            self.volumes.discard(volume)

    def run_rendered(self, obj: dict) -> subprocess.CompletedProcess:
        """Runs a rendered Job's or Pod's container to completion on the network."""
        spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Job" else obj["spec"]
        container = spec["containers"][0]
        run = docker_run_args(
            spec,
            container,
            name=f"{self.prefix}-{container['name']}-{secrets.token_hex(2)}",
            pod_name=container["name"],
            namespace=NAMESPACE,
            network=self.network,
            aliases=[],
            image=IMAGE,
            mounts=self.secret_mounts(spec),
            published={},
            secrets=self.secret_keys,
        )
        run.remove("-d")
        run.insert(2, "--rm")
        return subprocess.run(run, capture_output=True, text=True, timeout=300)

    def endpoints(self) -> str:
        return ",".join(f"127.0.0.1:{p['client_port']}" for p in self.pods.values())

    def wait_ready(self, timeout: float = 120):
        for pod in self.pods.values():
            wait_for(
                f"{pod['container']} /readyz",
                timeout,
                lambda pod=pod: http_status(f"127.0.0.1:{pod['metrics_port']}", "/readyz") == 200,
            )

    def status(self) -> dict:
        out = subprocess.run(
            [tool("txmq", "TXMQ_BIN"), "cluster", "status", "--output", "json", "--endpoints", self.endpoints()],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **self.client_env()},
        )
        return json.loads(out.stdout)

    def voters(self) -> list[int]:
        return sorted(n["id"] for n in self.status()["nodes"] if n["voter"])

    def logs(self) -> str:
        return "\n".join(self.node_log(p) for p in self.pods.values())

    def restart_counts(self) -> dict[str, str]:
        return {
            p["container"]: docker("inspect", "--format", "{{.RestartCount}}", p["container"], check=False).stdout.strip()
            for p in self.pods.values()
        }

    def node_log(self, pod) -> str:
        """The node's last lines, and any panic or error line from earlier: a panic that stopped
        Raft long before the failure would otherwise be cut off by the tail."""
        full = docker("logs", pod["container"], check=False).stderr.splitlines()
        early = [line for line in full[:-60] if "panicked at" in line or '"level":"ERROR"' in line][:40]
        tail = full[-60:]
        return f"===== {pod['container']} =====\n" + "\n".join(early + ["[…]"] + tail if early else tail)

    def plan(self, path: Path):
        path.write_text(
            json.dumps(
                {
                    "network": self.network,
                    "txn": CHAOS_TXN,
                    "nodes": [
                        {
                            "id": p["id"],
                            "container": p["container"],
                            "aliases": p["aliases"],
                            "client_addr": f"127.0.0.1:{p['client_port']}",
                            "metrics_addr": f"127.0.0.1:{p['metrics_port']}",
                        }
                        for p in self.pods.values()
                    ],
                }
            )
        )


class RenderAndRun(unittest.TestCase):
    def test_rendered_statefulset_forms_a_cluster_scales_and_serves_transactions(self):
        # As production runs it: TLS from Secrets on both ports, authentication on.
        cluster = ChartCluster({}, secured=True)
        try:
            for ordinal in range(3):
                cluster.start_pod(ordinal, replicas=3)
            cluster.wait_ready()
            self.assertEqual(cluster.voters(), [1, 2, 3])
            anonymous = subprocess.run(
                [tool("txmq", "TXMQ_BIN"), "cluster", "status", "--endpoints", cluster.endpoints()],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "TXMQ_TLS_CA": str(cluster.ca_file)},
            )
            self.assertIn("unauthenticated", anonymous.stderr)

            # The chart's `helm test` pod: a transaction committed and read back.
            check = cluster.run_rendered(one(cluster.rendered(3), "Pod", hook="test"))
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr + cluster.logs())
            self.assertIn("committed and read back", check.stdout)

            # Scale up to 4: the new pod (rendered with replicaCount=4) joins by itself, and a
            # rolled pod restarted with the new arguments keeps its data and its place.
            cluster.start_pod(3, replicas=4)
            wait_for("node 4 to become a voter", 120, lambda: cluster.voters() == [1, 2, 3, 4])
            cluster.start_pod(2, replicas=4)
            cluster.wait_ready()
            wait_for("four voters after the roll", 60, lambda: cluster.voters() == [1, 2, 3, 4])

            # Scale down to 3: the pre-upgrade hook of the upgrade removes node 4 first; then
            # the StatefulSet deletes the pod and (whenScaled: Delete) its volume.
            hook = cluster.run_rendered(one(cluster.rendered(3), "Job", hook="pre-upgrade"))
            self.assertEqual(hook.returncode, 0, hook.stdout + hook.stderr + cluster.logs())
            cluster.remove_pod(3, delete_volume=True)
            self.assertEqual(cluster.voters(), [1, 2, 3])
            # The hook is a no-op when nothing is to be removed (every later upgrade runs it).
            again = cluster.run_rendered(one(cluster.rendered(3), "Job", hook="pre-upgrade"))
            self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
            check = cluster.run_rendered(one(cluster.rendered(3), "Pod", hook="test"))
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr + cluster.logs())
        finally:
            cluster.close()


class ContainerChaos(unittest.TestCase):
    def test_chaos_workload_under_docker_kill_pause_and_disconnect(self):
        chaos = tool("chaos", "CHAOS_BIN")
        seed = os.environ.get("CHAOS_SEED") or str(secrets.randbelow(1 << 32))
        duration = os.environ.get("CHAOS_DURATION", "30s")
        cluster = ChartCluster({"config": CHAOS_CONFIG})
        try:
            for ordinal in range(3):
                cluster.start_pod(ordinal, replicas=3)
            cluster.wait_ready()
            with tempfile.TemporaryDirectory() as tmp:
                plan = Path(tmp) / "plan.json"
                report = Path(tmp) / "report.json"
                cluster.plan(plan)
                result = subprocess.run(
                    [chaos, "--docker-plan", str(plan), "--seed", seed, "--duration", duration, "--report", str(report)],
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                print(result.stdout)
                # A node that exits by itself (its Raft stopped: it exits so it is restarted) is
                # restarted by the restart policy, as the kubelet would; say so, it is a finding.
                print(f"restarts by the restart policy: {cluster.restart_counts()}")
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr + cluster.logs())
                doc = json.loads(report.read_text())
                self.assertEqual(doc["violations"], [])
                self.assertTrue(doc["faults"], "the nemesis injected nothing")
                self.assertTrue(any("docker" in f for f in doc["faults"]), doc["faults"])
                self.assertGreater(doc["committed"], 0)
                self.assertEqual(doc["replicas_compared"], 3)
        finally:
            cluster.close()


if __name__ == "__main__":
    unittest.main()
