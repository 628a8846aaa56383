#!/usr/bin/env python3
"""End to end: the real kvserve, real traffic, the real Prometheus.

Starts kvserve on free loopback ports, sends a known number of requests with `kvserve-cli stream`
(and a known number of invalid ones), checks the scrape of /metrics with `promtool check metrics`
and against every name the dashboard, alerts and adapter use, then starts `prometheus` scraping it
every second and reads the series back through /api/v1/query: the counts must match what was sent,
the latency histograms must be filled, and every dashboard and alert query must run.

    prometheus_scrape_test.py --kvserve BIN --cli BIN --shared DIR   ($KVSERVE_SHARED wins)
Exits 77 (skipped) when prometheus or promtool is not installed (scripts/install-deps.sh installs
them). Everything listens on 127.0.0.1; every child is killed at the end; bounded in time.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/deploy"))
import check_deploy  # noqa: E402  (the dashboard's and alerts' queries)

REQUESTS = 5
INVALID = 2
NEW_TOKENS = 8
DEADLINE = time.monotonic() + 240  # the whole test


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, timeout):
    end = min(time.monotonic() + timeout, DEADLINE)
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class Children:
    """Child processes, each killed (then reaped) at the end, whatever happens."""

    def __init__(self):
        self.processes = []

    def start(self, args, **kwargs):
        p = subprocess.Popen(args, **kwargs)
        self.processes.append(p)
        return p

    def stop(self):
        for p in reversed(self.processes):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def query(web, expr):
    url = f"http://{web}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(http_get(url))
    if body["status"] != "success":
        raise AssertionError(f"query failed: {expr}: {body}")
    return body["data"]["result"]


def scalar(web, expr):
    result = query(web, expr)
    return float(result[0]["value"][1]) if result else None


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message)
    if not condition:
        raise AssertionError(message)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kvserve", required=True)
    parser.add_argument("--cli", required=True)
    parser.add_argument("--shared", required=True, help="the shared folder (models/stories260K)")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="an extra kvserve flag, e.g. --server-arg=--device=cuda")
    args = parser.parse_args()
    args.model = str(Path(os.environ.get("KVSERVE_SHARED") or args.shared, "models/stories260K"))
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} not installed (Debian package prometheus; scripts/install-deps.sh)")
            return 77
    if not Path(args.model, "config.json").exists():
        print(f"SKIP: no model at {args.model}")
        return 77
    print(subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout
          .splitlines()[0])

    children = Children()
    tmp = Path(tempfile.mkdtemp(prefix="kvserve-prom-"))
    try:
        run(args, children, tmp)
    finally:
        children.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def run(args, children, tmp):
    # kvserve on a free gRPC port (it prints which) and a free metrics port.
    metrics_port = free_port()
    server_out = open(tmp / "kvserve.out", "w+")
    server = children.start(
        [args.kvserve, f"--model={args.model}", "--host=127.0.0.1", "--port=0",
         f"--metrics_port={metrics_port}", "--kv_cache_gb=0.25", *args.server_arg],
        stdout=server_out, stderr=open(tmp / "kvserve.err", "w"))

    def listening():
        if server.poll() is not None:
            raise AssertionError("kvserve exited: " + (tmp / "kvserve.err").read_text()[-2000:])
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", (tmp / "kvserve.out").read_text())
        return m and m.group(1)

    grpc = f"127.0.0.1:{wait_for('kvserve to listen', listening, 60)}"
    health = subprocess.run([args.cli, "health", "--server", grpc], capture_output=True, text=True,
                            timeout=30)
    check(health.returncode == 0, f"kvserve-cli health: {health.stdout.strip()}")
    closed = subprocess.run([args.cli, "health", "--server", f"127.0.0.1:{free_port()}",
                             "--timeout", "1"], capture_output=True, timeout=30)
    check(closed.returncode == 1, "kvserve-cli health fails (exit 1) on a closed port")
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    wait_for("/metrics", lambda: http_get(metrics_url), 10)

    # Known traffic: REQUESTS served requests, INVALID refused by validation.
    for i in range(REQUESTS):
        subprocess.run([args.cli, "stream", "--server", grpc, "--prompt", f"Once upon a time {i}",
                        "--max-new-tokens", str(NEW_TOKENS), "--ignore-eos", "--timeout", "60"],
                       check=True, capture_output=True, timeout=90)
    for _ in range(INVALID):
        bad = subprocess.run([args.cli, "stream", "--server", grpc, "--prompt", "x",
                              "--max-new-tokens", "0"], capture_output=True, timeout=60)
        check(bad.returncode != 0, "a request with max_new_tokens 0 is refused")

    # The exposition itself: valid text format, and it holds every name the deploy files use.
    exposition = tmp / "metrics.txt"
    exposition.write_text(http_get(metrics_url))
    lint = subprocess.run(["promtool", "check", "metrics"], input=exposition.read_text(),
                          capture_output=True, text=True)
    check(lint.returncode == 0, "promtool check metrics: " + (lint.stdout + lint.stderr).strip())
    names = subprocess.run([sys.executable, str(ROOT / "tests/deploy/check_deploy.py"), "names",
                            str(exposition)], capture_output=True, text=True)
    print(names.stdout.strip())
    check(names.returncode == 0, "every dashboard/alert/adapter metric is in the exposition")

    # The real Prometheus, scraping every second, on its own data dir and a loopback port.
    web = f"127.0.0.1:{free_port()}"
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{ROOT / 'deploy/prometheus/rules/kvserve-alerts.yml'}]\n"
        "scrape_configs:\n"
        "  - job_name: kvserve\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n")
    children.start(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address={web}", "--log.level=warn"],
                   stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.err", "w"))
    wait_for("Prometheus to have scraped the traffic",
             lambda: _ready(web) and scalar(web, "sum(kvserve_request_success_total)") == REQUESTS,
             60)

    check(scalar(web, 'up{job="kvserve"}') == 1, "Prometheus scrapes kvserve (up == 1)")
    model = query(web, "kvserve_num_requests_running")[0]["metric"].get("model_name", "")
    check(model != "", f"series carry model_name ({model})")
    expect = {
        'sum(kvserve_request_success_total{finished_reason="length"})': REQUESTS,
        'sum(kvserve_request_failure_total{code="INVALID_ARGUMENT"})': INVALID,
        "sum(kvserve_requests_by_policy_total)": REQUESTS,
        'sum(kvserve_time_to_first_token_seconds_count{policy="FULL"})': REQUESTS,
        "sum(kvserve_e2e_request_latency_seconds_count)": REQUESTS,
        "sum(kvserve_request_queue_time_seconds_count)": REQUESTS,
        "sum(kvserve_inter_token_latency_seconds_count)": REQUESTS * (NEW_TOKENS - 1),
        "sum(kvserve_generation_tokens_total)": REQUESTS * NEW_TOKENS,
        "sum(kvserve_request_generation_tokens_sum)": REQUESTS * NEW_TOKENS,
        "sum(kvserve_num_requests_running)": 0,
        "sum(kvserve_num_requests_waiting)": 0,
        "sum(kvserve_kv_cache_usage_perc)": 0,
    }
    for expr, value in expect.items():
        got = scalar(web, expr)
        check(got == value, f"{expr} = {got}, expected {value}")
    prompt = scalar(web, "sum(kvserve_prompt_tokens_total)")
    check(prompt == scalar(web, "sum(kvserve_request_prompt_tokens_sum)") and prompt > 0,
          f"prompt tokens counted once per token ({prompt})")
    for name in ("kvserve_time_to_first_token_seconds", "kvserve_e2e_request_latency_seconds",
                 "kvserve_engine_step_seconds"):
        p50 = scalar(web, f"histogram_quantile(0.5, sum by (le) ({name}_bucket))")
        check(p50 is not None and 0 < p50 < 60, f"{name} p50 = {p50} s")
    check(scalar(web, "sum(kvserve_kv_pool_bytes)") == 0.25 * 2**30, "pool bytes add up to 0.25 GiB")

    # Every dashboard and alert query runs on the live data (not only parses).
    queries = [(t, check_deploy.grafana_to_promql(e)) for t, e in check_deploy.dashboard_queries()]
    queries += check_deploy.alert_exprs()
    for title, expr in queries:
        query(web, expr)
    check(True, f"all {len(queries)} dashboard and alert queries run on Prometheus")
    firing = [a["labels"]["alertname"] for a in
              json.loads(http_get(f"http://{web}/api/v1/alerts"))["data"]["alerts"]]
    check(not firing, f"no alert fires on a healthy server ({firing})")


def _ready(web):
    try:
        return http_get(f"http://{web}/-/ready", timeout=1).strip() != ""
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
