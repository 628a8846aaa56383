#!/usr/bin/env python3
"""Writes kvserve.json, the Grafana dashboard of METRICS.md: rows Latency, Throughput, Capacity,
Cache policies; variables datasource, instance, model_name, policy. Edit this file, not the JSON:
    deploy/grafana/build_dashboard.py > deploy/grafana/kvserve.json
tests/deploy checks that the JSON is up to date, that every expression parses (promtool) and that
every kvserve_* name it uses is in a real exposition of the server."""
import json

SEL = 'instance=~"$instance", model_name=~"$model_name"'
POL = SEL + ', policy=~"$policy"'
RATE = "$__rate_interval"
DS = {"type": "prometheus", "uid": "${datasource}"}


def quantile(q, metric, selector=SEL, by=""):
    by_labels = "le" + (", " + by if by else "")
    return (f"histogram_quantile({q}, sum by ({by_labels}) "
            f"(rate({metric}_bucket{{{selector}}}[{RATE}])))")


def mean(metric, selector=SEL, by=""):
    group = f"sum by ({by}) " if by else "sum "
    return (f"{group}(rate({metric}_sum{{{selector}}}[{RATE}])) / "
            f"{group}(rate({metric}_count{{{selector}}}[{RATE}]))")


def rate(metric, selector=SEL, by=""):
    group = f"sum by ({by}) " if by else "sum "
    return f"{group}(rate({metric}{{{selector}}}[{RATE}]))"


class Dashboard:
    def __init__(self):
        self.panels = []
        self.y = 0
        self.x = 0
        self.next_id = 1

    def row(self, title):
        self.y += 8 if self.x else 0
        self.x = 0
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def panel(self, title, unit, targets, description="", width=8):
        if self.x + width > 24:
            self.x = 0
            self.y += 8
        self.panels.append({
            "type": "timeseries",
            "title": title,
            "description": description,
            "id": self._id(),
            "datasource": DS,
            "gridPos": {"h": 8, "w": width, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                        "tooltip": {"mode": "multi"}},
            "targets": [{"datasource": DS, "refId": chr(ord("A") + i), "expr": expr,
                         "legendFormat": legend} for i, (expr, legend) in enumerate(targets)],
        })
        self.x += width

    def _id(self):
        self.next_id += 1
        return self.next_id - 1


def variable(name, query, label):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": name}, "definition": query, "refresh": 2,
            "multi": True, "includeAll": True, "current": {"text": "All", "value": "$__all"},
            "sort": 1}


def build():
    d = Dashboard()
    ttft = "kvserve_time_to_first_token_seconds"
    itl = "kvserve_inter_token_latency_seconds"
    d.row("Latency")
    d.panel("Time to first token", "s",
            [(quantile(q, ttft, POL), f"p{int(q * 100)}") for q in (0.5, 0.9, 0.99)],
            "Arrival to first token, over the selected cache policies.")
    d.panel("Inter-token latency", "s",
            [(quantile(q, itl, POL), f"p{int(q * 100)}") for q in (0.5, 0.99)],
            "Gap between consecutive tokens of a stream.")
    d.panel("Time per output token", "s",
            [(quantile(q, "kvserve_request_time_per_output_token_seconds"), f"p{int(q * 100)}")
             for q in (0.5, 0.99)], "Per request: (e2e - TTFT) / (tokens - 1).")
    d.panel("End-to-end latency", "s",
            [(quantile(0.5, "kvserve_e2e_request_latency_seconds"), "p50"),
             (quantile(0.99, "kvserve_e2e_request_latency_seconds"), "p99")])
    d.panel("Queue time", "s",
            [(quantile(0.5, "kvserve_request_queue_time_seconds"), "p50"),
             (quantile(0.99, "kvserve_request_queue_time_seconds"), "p99")],
            "Arrival to admission into the engine.")
    d.panel("TTFT p99 by policy", "s", [(quantile(0.99, ttft, POL, "policy"), "{{policy}}")])

    d.row("Throughput")
    d.panel("Tokens/s", "short",
            [(rate("kvserve_prompt_tokens_total"), "prompt"),
             (rate("kvserve_generation_tokens_total"), "generation")])
    d.panel("Requests/s by finish reason", "reqps",
            [(rate("kvserve_request_success_total", by="finished_reason"), "{{finished_reason}}")])
    d.panel("Errors/s by gRPC code", "reqps",
            [(rate("kvserve_request_failure_total", by="code") + " > 0", "{{code}}")],
            "Requests ended with an error or cancelled, server-side rejections included.")

    d.row("Capacity")
    d.panel("Running and waiting requests", "short",
            [(f"sum by (instance) (kvserve_num_requests_running{{{SEL}}})", "running {{instance}}"),
             (f"sum by (instance) (kvserve_num_requests_waiting{{{SEL}}})", "waiting {{instance}}")])
    d.panel("KV cache usage", "percentunit",
            [(f"max by (instance) (kvserve_kv_cache_usage_perc{{{SEL}}})", "{{instance}}")],
            "Fraction of the KV pool reserved by admitted requests.")
    d.panel("KV pool bytes", "bytes",
            [(f"sum by (state) (kvserve_kv_pool_bytes{{{SEL}}})", "{{state}}")])
    d.panel("Batch size", "short",
            [(quantile(0.5, "kvserve_engine_batch_size"), "p50"),
             (quantile(0.99, "kvserve_engine_batch_size"), "p99"),
             (mean("kvserve_engine_batch_size"), "mean")])
    d.panel("Engine step time", "s",
            [(quantile(0.99, "kvserve_engine_step_seconds", by="phase"), "p99 {{phase}}"),
             (quantile(0.5, "kvserve_engine_step_seconds", by="phase"), "p50 {{phase}}")])
    d.panel("Preemptions/s", "short", [(rate("kvserve_num_preemptions_total"), "preemptions")])

    d.row("Cache policies")
    d.panel("Requests/s by policy", "reqps",
            [(rate("kvserve_requests_by_policy_total", POL, "policy"), "{{policy}}")])
    d.panel("Evicted tokens/s by policy", "short",
            [(rate("kvserve_cache_evicted_tokens_total", POL, "policy"), "{{policy}}")])
    d.panel("Compression events/s by policy", "short",
            [(rate("kvserve_cache_compression_events_total", POL, "policy"), "{{policy}}")])
    d.panel("Compression ratio by policy", "none",
            [(mean("kvserve_cache_compression_ratio", POL, "policy"), "mean {{policy}}"),
             (quantile(0.5, "kvserve_cache_compression_ratio", POL, "policy"), "p50 {{policy}}")],
            "Per finished request: tokens seen / peak tokens kept (1 = no compression).")
    d.panel("Policy update time p99", "s",
            [(quantile(0.99, "kvserve_cache_policy_update_seconds", POL, "policy"), "{{policy}}")],
            "Time in CachePolicy::Update per engine step (host time).")
    d.panel("CritiPrefill skipped attention", "percentunit",
            [(quantile(0.5, "kvserve_prefill_attention_skipped_ratio"), "p50"),
             (mean("kvserve_prefill_attention_skipped_ratio"), "mean")])

    return {
        "title": "kvserve",
        "uid": "kvserve",
        "description": "kvserve: latency, throughput, capacity and cache policies (METRICS.md).",
        "tags": ["kvserve", "llm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": d.panels,
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0},
            variable("instance", "label_values(kvserve_num_requests_running, instance)",
                     "Instance"),
            variable("model_name",
                     'label_values(kvserve_num_requests_running{instance=~"$instance"}, model_name)',
                     "Model"),
            variable("policy",
                     'label_values(kvserve_requests_by_policy_total{model_name=~"$model_name"}, policy)',
                     "Cache policy"),
        ]},
        "annotations": {"list": []},
    }


if __name__ == "__main__":
    print(json.dumps(build(), indent=2))
