"""Static tests of the Helm chart: Helm's own strict lint and render (Helm v4 SDK), strict
Kubernetes schema validation of every rendered object, promtool on the rendered alert rules,
and what the objects must say for txmq to be safe (quorum, identities, probes)."""

from __future__ import annotations

import json
import subprocess
import tempfile
import tomllib
import unittest
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

from chart import CHART_DIR, NAMESPACE, notes, objects, one, render, tool

# Several ways people install it: the defaults, a production-like 5-node release with the
# monitoring objects, a throwaway single node, and everything renamed.
VALUE_SETS: dict[str, dict] = {
    "defaults": {},
    "five-nodes-monitoring": {
        "replicaCount": 5,
        "podAntiAffinity": "hard",
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True},
            "dashboard": {"enabled": True},
        },
        "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    },
    "single-ephemeral": {
        "replicaCount": 1,
        "persistence": {"enabled": False},
        "podAntiAffinity": "none",
        "topologySpread": {"enabled": False},
        "tests": {"enabled": False},
        "scaleDownHook": {"enabled": False},
    },
    "renamed": {
        "fullnameOverride": "queue",
        "clusterDomain": "k8s.example",
        "ports": {"client": 7000, "peer": 7001, "metrics": 7002},
        "image": {"repository": "registry.example/txmq", "tag": "1.2.3", "pullPolicy": "Always"},
        "config": {"log_format": "human", "election_timeout": "2s", "txn_max_checks": 5},
        "extraArgs": ["--snapshot-logs=1000"],
        "service": {"type": "LoadBalancer"},
        "persistence": {"enabled": True, "storageClassName": "fast", "size": "50Gi"},
    },
    "rocketmq": {
        "rocketmq": {"enabled": True, "port": 8081},
        "networkPolicy": {"clientFrom": [{"podSelector": {"matchLabels": {"role": "app"}}}]},
    },
    "secured": {
        "tls": {"secretName": "txmq-tls", "requireClientCert": True},
        "peerTls": {"secretName": "txmq-peer-tls"},
        "auth": {"adminSecretName": "txmq-admin"},
        "networkPolicy": {"clientFrom": [{"podSelector": {"matchLabels": {"role": "app"}}}]},
    },
}

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas known.
KUBE_VERSIONS = ["1.27.0", kubernetes_validate.utils.latest_version()]
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}


def merged(values: dict) -> dict:
    return helm.Chart.load(str(CHART_DIR)).merge_values(values)


class LintAndRender(unittest.TestCase):
    def test_strict_lint_is_clean_for_every_value_set(self):
        for name, values in VALUE_SETS.items():
            with self.subTest(values=name):
                report = helm.lint(str(CHART_DIR), values, strict=True, namespace=NAMESPACE)
                self.assertEqual(report["errors"], [], report)
                findings = [m for m in report["messages"] if m["severity"] >= 2]
                self.assertEqual(findings, [], report)

    def test_every_object_passes_strict_kubernetes_schemas(self):
        for name, values in VALUE_SETS.items():
            for obj in objects(render(values)):
                if obj["kind"] in CUSTOM_KINDS:
                    continue
                for version in KUBE_VERSIONS:
                    with self.subTest(values=name, kind=obj["kind"], version=version):
                        kubernetes_validate.validate(obj, version, strict=True)

    def test_monitoring_objects_only_when_asked_and_well_formed(self):
        self.assertFalse(
            {o["kind"] for o in objects(render({}))} & CUSTOM_KINDS,
            "monitoring CRDs must be opt-in (clusters without the operator reject them)",
        )
        rendered = render(VALUE_SETS["five-nodes-monitoring"])
        monitor = one(rendered, "ServiceMonitor")
        headless = [
            o for o in objects(rendered) if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None"
        ][0]
        selector = monitor["spec"]["selector"]["matchLabels"]
        self.assertLessEqual(selector.items(), headless["metadata"]["labels"].items())
        self.assertEqual(monitor["spec"]["endpoints"][0]["port"], "metrics")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack")
        dashboard = [
            o for o in objects(rendered) if o["kind"] == "ConfigMap" and "txmq-dashboard.json" in o.get("data", {})
        ][0]
        self.assertEqual(json.loads(dashboard["data"]["txmq-dashboard.json"])["uid"], "txmq-overview")
        self.assertEqual(dashboard["metadata"]["labels"]["grafana_dashboard"], "1")

    def test_rendered_alert_rules_pass_promtool(self):
        promtool = tool("promtool", "PROMTOOL")
        rule = one(render(VALUE_SETS["five-nodes-monitoring"]), "PrometheusRule")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "rules.yaml"
            path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
            result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            # Every rule of the chart's alerts file made it into the PrometheusRule.
            source = yaml.safe_load((CHART_DIR / "files" / "alerts.yaml").read_text())
            expected = sum(len(g["rules"]) for g in source["groups"])
            self.assertIn(f"{expected} rules found", result.stdout)
        # Prometheus' own template syntax in the annotations survives Helm untouched.
        descriptions = [r["annotations"]["description"] for r in rule["spec"]["groups"][0]["rules"]]
        self.assertTrue(any("{{ $labels.job }}" in d for d in descriptions))


class ClusterSafety(unittest.TestCase):
    def test_statefulset_identity_and_bootstrap_follow_the_ordinals(self):
        for name, values in VALUE_SETS.items():
            with self.subTest(values=name):
                v = merged(values)
                rendered = render(values)
                sts = one(rendered, "StatefulSet")
                spec = sts["spec"]
                self.assertEqual(spec["podManagementPolicy"], "Parallel")
                self.assertEqual(spec["replicas"], v["replicaCount"])
                container = spec["template"]["spec"]["containers"][0]
                args = container["args"]
                self.assertIn("--node-id-from-pod-name=$(POD_NAME)", args)
                self.assertEqual(
                    container["env"][0],
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                )
                initial = [a for a in args if a.startswith("--initial-cluster=")][0].split("=", 1)[1]
                fullname = sts["metadata"]["name"]
                headless = spec["serviceName"]
                domain = f"{headless}.{NAMESPACE}.svc.{v['clusterDomain']}"
                expected = ",".join(
                    f"{i + 1}={fullname}-{i}.{domain}:{v['ports']['peer']}" for i in range(v["replicaCount"])
                )
                self.assertEqual(initial, expected)
                self.assertIn(f"--advertise-peer-addr=$(POD_NAME).{domain}:{v['ports']['peer']}", args)
                for extra in v["extraArgs"]:
                    self.assertIn(extra, args)

    def test_headless_service_publishes_not_ready_pods_and_client_service_does_not(self):
        rendered = render({})
        services = [o for o in objects(rendered) if o["kind"] == "Service"]
        headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
        client = [s for s in services if s["spec"].get("clusterIP") != "None"]
        self.assertEqual(len(headless), 1)
        self.assertEqual(len(client), 1)
        self.assertTrue(headless[0]["spec"]["publishNotReadyAddresses"])
        self.assertFalse(client[0]["spec"].get("publishNotReadyAddresses", False))
        sts = one(rendered, "StatefulSet")
        self.assertEqual(sts["spec"]["serviceName"], headless[0]["metadata"]["name"])
        pod_labels = sts["spec"]["template"]["metadata"]["labels"]
        for service in services:
            self.assertLessEqual(service["spec"]["selector"].items(), pod_labels.items())

    def test_disruption_budget_keeps_a_majority(self):
        for replicas, quorum in [(3, 2), (4, 3), (5, 3), (7, 4)]:
            with self.subTest(replicas=replicas):
                pdb = one(render({"replicaCount": replicas}), "PodDisruptionBudget")
                self.assertEqual(pdb["spec"]["minAvailable"], quorum)
        kinds = {o["kind"] for o in objects(render(VALUE_SETS["single-ephemeral"]))}
        self.assertNotIn("PodDisruptionBudget", kinds, "a 1-node PDB would block every drain")

    def test_probes_volumes_and_security(self):
        for name, values in VALUE_SETS.items():
            with self.subTest(values=name):
                v = merged(values)
                pod = one(render(values), "StatefulSet")["spec"]["template"]["spec"]
                c = pod["containers"][0]
                self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
                self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
                startup = c["startupProbe"]
                self.assertGreaterEqual(startup["periodSeconds"] * startup["failureThreshold"], 300)
                self.assertTrue(pod["securityContext"]["runAsNonRoot"])
                self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
                self.assertEqual(c["securityContext"]["capabilities"]["drop"], ["ALL"])
                self.assertIn("limits", c["resources"])
                sts_spec = one(render(values), "StatefulSet")["spec"]
                volumes = {vol["name"]: vol for vol in pod["volumes"]}
                if v["persistence"]["enabled"]:
                    claim = sts_spec["volumeClaimTemplates"][0]
                    self.assertEqual(claim["metadata"]["name"], "data")
                    self.assertEqual(claim["spec"]["resources"]["requests"]["storage"], v["persistence"]["size"])
                    self.assertEqual(sts_spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"], "Delete")
                    self.assertNotIn("data", volumes)
                else:
                    self.assertNotIn("volumeClaimTemplates", sts_spec)
                    self.assertIn("emptyDir", volumes["data"])

    def test_anti_affinity_modes(self):
        def affinity(mode):
            return one(render({"podAntiAffinity": mode}), "StatefulSet")["spec"]["template"]["spec"].get("affinity")

        self.assertIn("preferredDuringSchedulingIgnoredDuringExecution", affinity("soft")["podAntiAffinity"])
        self.assertIn("requiredDuringSchedulingIgnoredDuringExecution", affinity("hard")["podAntiAffinity"])
        self.assertIsNone(affinity("none"))

    def test_config_map_is_the_toml_txmq_reads(self):
        for name, values in VALUE_SETS.items():
            with self.subTest(values=name):
                cm = [
                    o for o in objects(render(values)) if o["kind"] == "ConfigMap" and "txmq.toml" in o["data"]
                ][0]
                self.assertEqual(tomllib.loads(cm["data"]["txmq.toml"]), merged(values)["config"])
                sts = one(render(values), "StatefulSet")
                self.assertIn("--config=/etc/txmq/txmq.toml", sts["spec"]["template"]["spec"]["containers"][0]["args"])
                self.assertIn("checksum/config", sts["spec"]["template"]["metadata"]["annotations"])

    def test_scale_down_hook_and_test_pod(self):
        rendered = render({"replicaCount": 5})
        job = one(rendered, "Job", hook="pre-upgrade")
        pod = job["spec"]["template"]
        self.assertEqual(pod["spec"]["containers"][0]["args"][:3], ["cluster", "remove-above", "--keep=5"])
        selector = one(rendered, "StatefulSet")["spec"]["selector"]["matchLabels"]
        self.assertFalse(
            selector.items() <= pod["metadata"]["labels"].items(),
            "the hook's pod must not match the broker selector (Services, PDB)",
        )
        test = one(rendered, "Pod", hook="test")
        self.assertEqual(test["spec"]["containers"][0]["args"][:2], ["cluster", "check"])
        self.assertFalse(selector.items() <= test["metadata"]["labels"].items())

    def test_secured_nodes_and_tools_get_tls_and_credentials_from_their_secrets(self):
        rendered = render(VALUE_SETS["secured"])
        pod = one(rendered, "StatefulSet")["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        for flag in [
            "--tls-cert=/etc/txmq-tls/tls.crt",
            "--tls-client-ca=/etc/txmq-tls/ca.crt",
            "--peer-tls-ca=/etc/txmq-peer-tls/ca.crt",
            "--auth-admin-file=/etc/txmq-admin",
        ]:
            self.assertIn(flag, args)
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        self.assertEqual(secrets, {"tls": "txmq-tls", "peer-tls": "txmq-peer-tls", "admin": "txmq-admin"})
        for tool in [one(rendered, "Job", hook="pre-upgrade")["spec"]["template"]["spec"], one(rendered, "Pod", hook="test")["spec"]]:
            env = {e["name"]: e for e in tool["containers"][0]["env"]}
            self.assertEqual(env["TXMQ_TLS_CA"]["value"], "/etc/txmq-tls/ca.crt")
            self.assertEqual(env["TXMQ_TLS_CLIENT_CERT"]["value"], "/etc/txmq-tls/tls.crt")
            self.assertEqual(env["TXMQ_PASSWORD"]["valueFrom"]["secretKeyRef"], {"name": "txmq-admin", "key": "password"})
            self.assertEqual(tool["volumes"][0]["secret"]["secretName"], "txmq-tls")
        plain = one(render({}), "StatefulSet")["spec"]["template"]["spec"]
        self.assertFalse([a for a in plain["containers"][0]["args"] if "tls" in a or "auth" in a])

    def test_network_policy_lets_only_the_release_reach_the_peer_port(self):
        rendered = render(VALUE_SETS["secured"])
        policy = one(rendered, "NetworkPolicy")
        selector = one(rendered, "StatefulSet")["spec"]["selector"]["matchLabels"]
        self.assertEqual(policy["spec"]["podSelector"]["matchLabels"], selector)
        by_port = {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}
        self.assertEqual(by_port[9871]["from"], [{"podSelector": {"matchLabels": selector}}])
        self.assertEqual(by_port[9870]["from"], [{"podSelector": {"matchLabels": {"role": "app"}}}])
        self.assertNotIn("from", by_port[9872], "metrics stay reachable by Prometheus anywhere")
        self.assertNotIn("NetworkPolicy", {o["kind"] for o in objects(render({"networkPolicy": {"enabled": False}}))})

    def test_rocketmq_port_is_served_advertised_exposed_and_let_through(self):
        rendered = render(VALUE_SETS["rocketmq"])
        container = one(rendered, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
        self.assertIn("--rocketmq-addr=0.0.0.0:8081", container["args"])
        advertise = [a for a in container["args"] if a.startswith("--advertise-rocketmq-addr=")]
        self.assertEqual(len(advertise), 1)
        self.assertTrue(advertise[0].startswith("--advertise-rocketmq-addr=$(POD_NAME)."), advertise)
        self.assertIn({"name": "rocketmq", "containerPort": 8081, "protocol": "TCP"}, container["ports"])
        service = [o for o in objects(rendered) if o["kind"] == "Service" and o["spec"].get("clusterIP") != "None"][0]
        self.assertIn(8081, [p["port"] for p in service["spec"]["ports"]])
        policy = one(rendered, "NetworkPolicy")
        client_rule = [r for r in policy["spec"]["ingress"] if {"port": 9870, "protocol": "TCP"} in r["ports"]][0]
        self.assertIn({"port": 8081, "protocol": "TCP"}, client_rule["ports"])
        defaults = one(render({}), "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
        self.assertFalse(any("rocketmq" in a for a in defaults["args"]), "off by default")
        secured = one(render({"rocketmq": {"enabled": True}, "auth": {"adminSecretName": "admin"}}), "StatefulSet")
        args = secured["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertIn("--rocketmq-addr=0.0.0.0:8081", args, "with auth too: requests are signed")

    def test_notes_tell_how_to_reach_and_check_the_cluster(self):
        text = notes({})
        self.assertIn("txmq cluster check", text)
        self.assertIn("txmq.txmq-test.svc.cluster.local:9870", text)
        self.assertIn("WARNING: persistence is disabled", notes({"persistence": {"enabled": False}}))
        self.assertIn("tolerates no failure", notes({"replicaCount": 1}))


class SchemaRejectsBadValues(unittest.TestCase):
    BAD = {
        "no nodes": {"replicaCount": 0},
        "unknown setting": {"config": {"node_id": 7}},
        "bad duration": {"config": {"election_timeout": "soon"}},
        "bad anti-affinity": {"podAntiAffinity": "maybe"},
        "bad port": {"ports": {"client": 70000, "peer": 9871, "metrics": 9872}},
        "unknown top-level key": {"replicas": 3},
    }

    def test_each_bad_value_is_rejected_with_its_key_named(self):
        chart = helm.Chart.load(str(CHART_DIR))
        for what, values in self.BAD.items():
            with self.subTest(what):
                with self.assertRaises(helm.HelmError) as caught:
                    chart.validate_schema(chart.merge_values(values))
                key = next(iter(values)) if what != "unknown setting" else "node_id"
                self.assertIn(key.split(".")[0], str(caught.exception))
                report = helm.lint(str(CHART_DIR), values, strict=True)
                self.assertTrue(report["errors"] or any(m["severity"] >= 3 for m in report["messages"]), report)


if __name__ == "__main__":
    unittest.main()
