"""Helpers of the chart tests: render the chart with the Helm v4 SDK (helm-python-sdk, no helm
binary) and turn the StatefulSet it renders into `docker run` invocations."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "txmq"
NAMESPACE = "txmq-test"
RELEASE = "txmq"


def tool(name: str, env: str) -> str:
    """A tool the tests need: from the environment variable, else from PATH; fails loudly."""
    path = os.environ.get(env) or shutil.which(name)
    if not path or not Path(path).exists():
        raise RuntimeError(f"{name} is required (set {env} or install it); refusing to skip")
    return path


def render(values: dict | None = None, namespace: str = NAMESPACE) -> dict[str, list[dict]]:
    """Renders the chart as an install would; template path -> its objects."""
    chart = helm.Chart.load(str(CHART_DIR))
    rendered = chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
    out: dict[str, list[dict]] = {}
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        out[path] = [doc for doc in yaml.safe_load_all(text) if doc]
    return out


def objects(rendered: dict[str, list[dict]]) -> list[dict]:
    return [obj for docs in rendered.values() for obj in docs]


def one(rendered: dict[str, list[dict]], kind: str, hook: str | None = None) -> dict:
    found = [
        o
        for o in objects(rendered)
        if o["kind"] == kind
        and (hook is None or o["metadata"].get("annotations", {}).get("helm.sh/hook") == hook)
    ]
    assert len(found) == 1, f"expected one {kind} (hook={hook}), found {len(found)}"
    return found[0]


def notes(values: dict | None = None) -> str:
    chart = helm.Chart.load(str(CHART_DIR))
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


_VAR = re.compile(r"\$\((\w+)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args (unknown variables stay as written)."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def memory_for_docker(quantity: str) -> str:
    units = {"Ki": "k", "Mi": "m", "Gi": "g"}
    for suffix, docker in units.items():
        if quantity.endswith(suffix):
            return quantity[: -len(suffix)] + docker
    return quantity


def container_env(
    container: dict, pod_name: str, namespace: str, secrets: dict[str, dict[str, str]] | None = None
) -> dict[str, str]:
    """The container's environment as the kubelet would set it (the field refs we use, and
    secret keys from `secrets`: secret name -> key -> value)."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(str(var["value"]), env)
            continue
        secret = var.get("valueFrom", {}).get("secretKeyRef")
        if secret:
            env[var["name"]] = (secrets or {})[secret["name"]][secret["key"]]
            continue
        field = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        refs = {"metadata.name": pod_name, "metadata.namespace": namespace}
        if field not in refs:
            raise AssertionError(f"env {var['name']}: unsupported source {var.get('valueFrom')}")
        env[var["name"]] = refs[field]
    return env


def docker_run_args(
    pod_spec: dict,
    container: dict,
    *,
    name: str,
    pod_name: str,
    namespace: str,
    network: str,
    aliases: list[str],
    image: str,
    mounts: dict[str, list[str]],
    published: dict[int, int],
    secrets: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """`docker run` arguments for one rendered container: its exact command, args, env, ports,
    user and file system restrictions. `mounts` maps volume names to `--mount`/`--tmpfs`
    options; `published` maps container ports to host ports on 127.0.0.1."""
    env = container_env(container, pod_name, namespace, secrets)
    command = [expand(c, env) for c in container.get("command", [])]
    args = [expand(a, env) for a in container.get("args", [])]
    run = ["docker", "run", "-d", "--name", name, "--hostname", pod_name, "--network", network]
    # The kubelet restarts a container that exits (restartPolicy Always, the default); Docker's
    # closest policy, which also leaves a container the tests kill on purpose stopped.
    if pod_spec.get("restartPolicy", "Always") != "Never":
        run += ["--restart", "on-failure"]
    for alias in aliases:
        run += ["--network-alias", alias]
    for key, value in env.items():
        run += ["-e", f"{key}={value}"]
    pod_sc = pod_spec.get("securityContext", {})
    sc = {**pod_sc, **container.get("securityContext", {})}
    if "runAsUser" in sc:
        run += ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"]
    if sc.get("readOnlyRootFilesystem"):
        run.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        run += ["--security-opt", "no-new-privileges"]
    for cap in sc.get("capabilities", {}).get("drop", []):
        run += ["--cap-drop", cap]
    limit = container.get("resources", {}).get("limits", {}).get("memory")
    if limit:
        run += ["--memory", memory_for_docker(limit)]
    for mount in container.get("volumeMounts", []):
        options = mounts.get(mount["name"])
        if options is None:
            raise AssertionError(f"no docker mount for volume {mount['name']}")
        run += options
    for port in container.get("ports", []):
        host = published.get(port["containerPort"])
        if host is not None:
            run += ["-p", f"127.0.0.1:{host}:{port['containerPort']}"]
    if command:
        run += ["--entrypoint", command[0]]
    run.append(image)
    run += command[1:] + args
    return run
