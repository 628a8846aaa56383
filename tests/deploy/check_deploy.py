#!/usr/bin/env python3
"""Checks of deploy/ that need no cluster. Subcommands:
  dashboard-current        kvserve.json is what build_dashboard.py writes
  panel-rules OUT          writes every dashboard and template query, Grafana variables replaced,
                           as recording rules, for `promtool check rules OUT` (PromQL parsing)
  names EXPOSITION         every kvserve_* series name used by the dashboard, the alerts and the
                           adapter rules is a sample name in EXPOSITION (a scrape of /metrics)
  k8s-json                 reads `kubectl kustomize` YAML on stdin, writes a JSON array
  k8s-required             reads that JSON on stdin; checks the fields each kind needs and the
                           promises of the issue (probes, GPU, grace > drain, ports, selectors)
"""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/kvserve.json"
ALERTS = ROOT / "deploy/prometheus/rules/kvserve-alerts.yml"
ADAPTER = ROOT / "deploy/k8s/prometheus-adapter/rules.yaml"
NAME = re.compile(r"\bkvserve_[a-z0-9_]+\b")


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


def dashboard_queries():
    """(title, PromQL) of every panel target and template variable of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            queries.append((f'{panel["title"]} {target["refId"]}', target["expr"]))
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.*), *\w+\)", var["query"]["query"])
        if not match:
            fail(f'variable {var["name"]}: not label_values(SELECTOR, LABEL)')
        queries.append((f'variable {var["name"]}', match.group(1)))
    return queries


def grafana_to_promql(expr):
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def alert_exprs():
    import yaml
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(r["alert"], r["expr"]) for g in groups for r in g["rules"]]


def adapter_exprs():
    import yaml
    rules = yaml.safe_load(ADAPTER.read_text())["rules"]
    return [(r["name"]["as"], r["seriesQuery"] + " " + r["metricsQuery"]) for r in rules]


def cmd_dashboard_current():
    built = subprocess.run([sys.executable, str(ROOT / "deploy/grafana/build_dashboard.py")],
                           check=True, capture_output=True, text=True).stdout
    if json.loads(built) != json.loads(DASHBOARD.read_text()):
        fail("deploy/grafana/kvserve.json is stale: run deploy/grafana/build_dashboard.py > it")
    print("dashboard JSON matches build_dashboard.py")


def cmd_panel_rules(out):
    import yaml
    rules = [{"record": f"kvserve_dashboard_query_{i}", "expr": grafana_to_promql(expr)}
             for i, (_, expr) in enumerate(dashboard_queries())]
    Path(out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    print(f"{len(rules)} dashboard queries written to {out}")


def cmd_names(exposition_path):
    exposed = set()
    for line in Path(exposition_path).read_text().splitlines():
        if line and not line.startswith("#"):
            exposed.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    used = {}
    for source, queries in (("dashboard", dashboard_queries()), ("alerts", alert_exprs()),
                            ("adapter", adapter_exprs())):
        for title, expr in queries:
            for name in NAME.findall(expr):
                used.setdefault(name, []).append(f"{source}: {title}")
    missing = {n: where for n, where in used.items() if n not in exposed}
    for name, where in sorted(missing.items()):
        print(f"missing from the exposition: {name} (used by {where[0]})")
    if missing:
        sys.exit(1)
    print(f"all {len(used)} kvserve_* names used by dashboard, alerts and adapter are exposed")


def cmd_k8s_json():
    import yaml
    print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))


def cmd_k8s_required():
    objects = json.load(sys.stdin)
    problems = []
    by_kind = {}
    for o in objects:
        where = f'{o.get("kind")}/{o.get("metadata", {}).get("name")}'
        for field in ("apiVersion", "kind", "metadata"):
            if field not in o:
                problems.append(f"{where}: no {field}")
        by_kind.setdefault(o.get("kind"), []).append(o)

    def need(cond, message):
        if not cond:
            problems.append(message)

    for kind in ("Deployment", "Service", "ConfigMap", "PodDisruptionBudget",
                 "HorizontalPodAutoscaler", "ServiceMonitor"):
        need(kind in by_kind, f"no {kind}")
    for d in by_kind.get("Deployment", []):
        spec = d["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        need(all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
             "Deployment selector does not match its pod labels")
        c = pod["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            need("grpc" in c.get(probe, {}), f"{probe} is not a gRPC health probe")
        need("preStop" in c.get("lifecycle", {}), "no preStop hook")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        need({"grpc", "metrics"} <= ports.keys(), "container ports grpc and metrics")
        drain = 30
        for o in by_kind.get("ConfigMap", []):
            m = re.search(r"--drain_timeout=(\d+)", o.get("data", {}).get("kvserve.flags", ""))
            drain = int(m.group(1)) if m else drain
        pre_stop = sum(int(x) for x in c["lifecycle"]["preStop"]["exec"]["command"][1:]
                       if x.isdigit())
        need(pod.get("terminationGracePeriodSeconds", 30) > drain + pre_stop,
             "terminationGracePeriodSeconds must exceed preStop + drain timeout")
        need(pod.get("securityContext", {}).get("runAsNonRoot") is True, "not runAsNonRoot")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        need("/models" in mounts, "no model volume at /models")
    for s in by_kind.get("Service", []):
        names = {p["name"] for p in s["spec"]["ports"]}
        need({"grpc", "metrics"} <= names, "Service ports grpc and metrics")
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        need(any(m["type"] == "Pods" for m in h["spec"]["metrics"]), "HPA has no Pods metric")
    for m in by_kind.get("ServiceMonitor", []):
        need(any(e.get("port") == "metrics" for e in m["spec"]["endpoints"]),
             "ServiceMonitor does not scrape the metrics port")
    gpu = [d for d in by_kind.get("Deployment", [])
           if "nvidia.com/gpu" in json.dumps(d["spec"]["template"]["spec"]["containers"][0]
                                             .get("resources", {}))]
    if "--gpu" in sys.argv:
        need(gpu, "the GPU overlay's Deployment has no nvidia.com/gpu resource")
    for p in problems:
        print("FAIL:", p)
    if problems:
        sys.exit(1)
    print(f"{len(objects)} objects: required fields and kvserve's promises present")


if __name__ == "__main__":
    command, args = sys.argv[1], [a for a in sys.argv[2:] if not a.startswith("--")]
    {"dashboard-current": cmd_dashboard_current, "panel-rules": cmd_panel_rules,
     "names": cmd_names, "k8s-json": cmd_k8s_json, "k8s-required": cmd_k8s_required}[command](*args)
