#!/usr/bin/env python3
"""Validates the deployment files: docker-compose.yml and its configs in deploy/, and the Helm
chart in helm/legato. Run by `make deploy-check` (part of `make test`) through deploy/check.sh.

- compose: the Compose spec JSON schema (the copy bundled in PyPI check-jsonschema), then what
  `docker compose config` would also refuse or what would break at run time: images, mounted
  files, host ports, depends_on, volumes; the Collector's pipeline and its exporter target; the
  Grafana data source URLs and dashboards provider; Prometheus scraping Legato with the chart's
  alert rules; the Legato config accepted by the real binary.
- dashboards (helm/legato/dashboards) and alerts (helm/legato/alerts): valid JSON, unique uids
  and titles, every panel and query on the ${datasource} variable, counters only under
  rate()/increase(); every alert with a severity, summary, description and a runbook_url that is
  a heading of docs/operations.md; `promtool check rules` and `promtool test rules
  deploy/legato-alerts.test.yaml` when promtool is installed. (That every metric they use is
  in /metrics is integration-tests/tests/it/dashboards.rs.)
- helm: for each values scenario, `helm lint --strict` and `helm template` with Helm's own Go
  engine (PyPI helm-python-sdk), every manifest against the Kubernetes JSON schemas (PyPI
  kubernetes-validate, strict: unknown fields fail), cross-references between the manifests,
  and each workload's config from the ConfigMap run through `legato -config.verify` with the
  args and env of that workload's container; the dashboards ConfigMap and the PrometheusRule
  (or rules ConfigMap) carry the chart's files unchanged.

Prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "legato"
DASHBOARDS = CHART / "dashboards"
ALERTS = CHART / "alerts" / "legato-alerts.yaml"
ALERT_TESTS = REPO / "deploy" / "legato-alerts.test.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
COMPOSE = REPO / "docker-compose.yml"
KUBE_VERSIONS = ["1.25.0", "1.33.0"]  # the chart's minimum and a current EKS version
NAMESPACE = "tracing"
RELEASE = "legato"

# (name, values file relative to the chart or None for defaults, expected targets)
SCENARIOS = [
    ("microservices (default values)", None,
     {"distributor", "ingester", "querier", "query-frontend", "compactor", "metrics-generator"}),
    ("microservices, IRSA + HPA + ServiceMonitor + PrometheusRule", "ci/full-values.yaml",
     {"distributor", "ingester", "querier", "query-frontend", "compactor", "metrics-generator"}),
    ("single binary, local storage", "ci/single-binary-values.yaml", {"all"}),
    ("single binary, S3 keys from a Secret", "ci/s3-secret-values.yaml", {"all"}),
    ("microservices on GCS, key from a mounted Secret", "ci/gcs-values.yaml",
     {"distributor", "ingester", "querier", "query-frontend", "compactor", "metrics-generator"}),
    ("microservices on Azure, shared key from the chart's Secret", "ci/azure-values.yaml",
     {"distributor", "ingester", "querier", "query-frontend", "compactor", "metrics-generator"}),
]


class Checker:
    def __init__(self, legato: Path, verbose: bool) -> None:
        self.legato = legato
        self.verbose = verbose
        self.passed = 0
        self.section_passed = 0
        self.failed: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="legato-deploy-check-"))

    def ok(self, what: str, always: bool = False) -> None:
        self.passed += 1
        self.section_passed += 1
        if always or self.verbose:
            print(f"  ok    {what}")

    def section(self, title: str) -> None:
        """Starts a group of checks; the previous group's count of passed checks is printed."""
        self.end_section()
        print(title)

    def end_section(self) -> None:
        if self.section_passed:
            print(f"  ok    {self.section_passed} checks passed")
        self.section_passed = 0

    def fail(self, what: str, why: str) -> None:
        self.failed.append(f"{what}: {why}")
        print(f"  FAIL  {what}: {why}")

    def expect(self, cond: bool, what: str, why: str = "") -> bool:
        if cond:
            self.ok(what)
        else:
            self.fail(what, why or "not true")
        return cond

    def verify_config(self, what: str, config_text: str, args: list[str], env: dict[str, str]) -> None:
        """Runs the real binary with -config.verify on a config and a container's arguments."""
        path = self.tmp / f"config-{self.passed + len(self.failed)}.yaml"
        path.write_text(config_text)
        argv = [str(self.legato)]
        for arg in args:
            argv.append(f"-config.file={path}" if arg.lstrip("-").startswith("config.file") else arg)
        argv.append("-config.verify")
        full_env = {"PATH": os.environ.get("PATH", ""), **env}
        proc = subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=30, cwd=self.tmp)
        out = (proc.stdout + proc.stderr).strip()
        shown = " ".join(a for a in args if not a.startswith("-config.file"))
        if proc.returncode == 0 and "config ok" in proc.stdout:
            self.ok(f"{what}: legato {shown} -config.verify -> {proc.stdout.strip()}", always=True)
        else:
            self.fail(f"{what}: legato {shown} -config.verify", f"exit {proc.returncode}: {out}")


# ---------------------------------------------------------------------------------- compose

def _authority(endpoint: str) -> str:
    """host:port of an endpoint or URL (scheme and path left out)."""
    return str(endpoint).split("://", 1)[-1].split("/", 1)[0]


def port_of(endpoint: str) -> int:
    return int(_authority(endpoint).rsplit(":", 1)[1])


def host_of(endpoint: str) -> str:
    return _authority(endpoint).rsplit(":", 1)[0]


def compose_schema() -> dict:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def host_ports(service: dict) -> list[str]:
    out = []
    for p in service.get("ports", []):
        if isinstance(p, dict):
            if p.get("published"):
                out.append(f"{p['published']}/{p.get('protocol', 'tcp')}")
            continue
        text = str(p)
        proto = "tcp"
        if "/" in text:
            text, proto = text.split("/", 1)
        parts = text.split(":")
        if len(parts) >= 2:
            out.append(f"{parts[-2]}/{proto}")
    return out


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of the bind mounts (sources that are paths, not named volumes)."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((v["source"], v["target"]))
            continue
        parts = str(v).split(":")
        if len(parts) >= 2 and parts[0].startswith((".", "/")):
            out.append((parts[0], parts[1]))
    return out


def check_compose(c: Checker) -> None:
    c.section("compose: docker-compose.yml")
    doc = yaml.safe_load(COMPOSE.read_text())
    schema = compose_schema()
    errors = sorted(jsonschema.validators.validator_for(schema)(schema).iter_errors(doc), key=lambda e: e.path)
    c.expect(not errors, "matches the Compose spec JSON schema (from check-jsonschema)",
             "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]))

    services: dict = doc.get("services", {})
    volumes = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        c.expect("image" in svc or "build" in svc, f"service {name} has an image or a build")
        if "build" in svc:
            ctx = svc["build"] if isinstance(svc["build"], str) else svc["build"].get("context", ".")
            dockerfile = "Dockerfile" if isinstance(svc["build"], str) else svc["build"].get("dockerfile", "Dockerfile")
            c.expect((REPO / ctx / dockerfile).is_file(), f"service {name} builds {ctx}/{dockerfile}", "missing")
        for src, _ in bind_mounts(svc):
            c.expect((REPO / src).is_file() or (REPO / src).is_dir(), f"service {name} mounts {src}", "missing in the repo")
        for v in svc.get("volumes", []):
            src = v.get("source") if isinstance(v, dict) else str(v).split(":")[0]
            if src and not src.startswith((".", "/")):
                c.expect(src in volumes, f"service {name} volume {src} is declared")
        deps = svc.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            c.expect(dep in services, f"service {name} depends_on {dep} exists")
    seen: dict[str, str] = {}
    for name, svc in services.items():
        for hp in host_ports(svc):
            if hp in seen:
                c.fail(f"host port {hp}", f"published by {seen[hp]} and {name}")
            seen[hp] = name
    c.ok(f"host ports do not collide ({', '.join(sorted(seen))})")

    # Legato: its config file, as the container sees it.
    legato = services["legato"]
    args = [str(a) for a in legato["command"]]
    cfg_target = next(a.split("=", 1)[1] for a in args if a.startswith("-config.file="))
    mounts = {tgt: src for src, tgt in bind_mounts(legato)}
    c.expect(cfg_target in mounts, f"legato -config.file={cfg_target} is a mounted file")
    if not (REPO / mounts.get(cfg_target, "-")).is_file():
        c.fail("compose legato config", f"{cfg_target} is not mounted from a file in the repo")
        return
    legato_cfg_text = (REPO / mounts[cfg_target]).read_text()
    env = {k: str(v) for k, v in (legato.get("environment") or {}).items()}
    c.verify_config("compose legato", legato_cfg_text, args, env)
    legato_cfg = yaml.safe_load(expand_env(legato_cfg_text, env))
    otlp = legato_cfg["distributor"]["receivers"]["otlp"]["protocols"]
    legato_otlp_ports = {port_of(otlp["grpc"]["endpoint"]), port_of(otlp["http"]["endpoint"])}
    legato_http = legato_cfg.get("server", {}).get("http_listen_port", 3200)
    s3 = legato_cfg["storage"]["trace"].get("s3", {})
    if s3.get("endpoint"):
        c.expect(host_of(s3["endpoint"]) in services, f"legato S3 endpoint {s3['endpoint']} is a compose service")
    creator = " ".join(map(str, services.get("create-bucket", {}).get("entrypoint", [])))
    c.expect(f"local/{s3.get('bucket')}" in creator, f"create-bucket makes bucket {s3.get('bucket')}")

    # Collector: the pipeline is complete and exports to Legato's OTLP receiver.
    col = services["otel-collector"]
    col_mounts = {tgt: src for src, tgt in bind_mounts(col)}
    col_cfg_path = next(str(a).split("=", 1)[1] for a in col["command"] if str(a).startswith("--config="))
    if not c.expect((REPO / col_mounts.get(col_cfg_path, "-")).is_file(), f"otel-collector --config={col_cfg_path} is a mounted file"):
        return
    col_cfg = yaml.safe_load((REPO / col_mounts[col_cfg_path]).read_text())
    # Component types of the Collector version the file is written for (v0.156.0, contrib):
    # deprecated aliases are refused, so the file stays free of deprecation warnings.
    known = {
        "receivers": {"otlp"},
        "processors": {"batch", "memory_limiter", "resource", "attributes", "k8sattributes"},
        "exporters": {"otlp_grpc", "otlp_http", "debug"},
    }
    deprecated = {"otlp": "otlp_grpc", "otlphttp": "otlp_http"}
    for kind, types in known.items():
        for component in col_cfg.get(kind) or {}:
            ctype = component.split("/", 1)[0]
            if kind == "exporters" and ctype in deprecated:
                c.fail(f"collector exporter {component}", f"deprecated alias; use {deprecated[ctype]}")
            else:
                c.expect(ctype in types, f"collector {kind[:-1]} {component} is a v0.156 component type", f"known: {sorted(types)}")
    pipe = col_cfg["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        for item in pipe.get(kind, []):
            c.expect(item in (col_cfg.get(kind) or {}), f"collector traces pipeline {kind[:-1]} {item} is defined")
    for exp in pipe["exporters"]:
        endpoint = col_cfg["exporters"][exp]["endpoint"]
        c.expect(host_of(endpoint) == "legato" and port_of(endpoint) in legato_otlp_ports,
                 f"collector exporter {exp} -> {endpoint} is Legato's OTLP port", f"Legato listens on {legato_otlp_ports}")
    col_grpc = port_of(col_cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    gen = services.get("telemetrygen", {})
    gen_target = next(str(a).split("=", 1)[1] for a in gen.get("command", []) if str(a).startswith("--otlp-endpoint="))
    c.expect(host_of(gen_target) == "otel-collector" and port_of(gen_target) == col_grpc,
             f"telemetrygen sends to {gen_target}, the collector's OTLP/gRPC receiver")

    # Prometheus: scrapes Legato's /metrics and loads the chart's alert rules.
    prometheus = check_compose_prometheus(c, services, legato_http)

    # Grafana: the provisioned data source is Tempo on Legato's HTTP port; the dashboards are
    # the chart's.
    graf = services["grafana"]
    provisioned = [src for src, tgt in bind_mounts(graf) if "provisioning/datasources" in tgt]
    c.expect(bool(provisioned), "grafana mounts a data source provisioning file")
    for src in provisioned:
        if (REPO / src).is_file():
            ds = yaml.safe_load((REPO / src).read_text())["datasources"]
            check_datasources(c, ds, "legato", legato_http, prometheus)
    check_compose_dashboards(c, graf)


def check_compose_prometheus(c: Checker, services: dict, legato_http: int) -> tuple[str, int] | None:
    """The Prometheus service scrapes Legato and evaluates the chart's alert rules; returns
    its (host, port) for Grafana's data source."""
    prom = services.get("prometheus")
    if not c.expect(prom is not None, "compose has a prometheus service (Legato's own metrics)"):
        return None
    mounts = {tgt: src for src, tgt in bind_mounts(prom)}
    cfg_src = mounts.get("/etc/prometheus/prometheus.yml")
    if not c.expect(cfg_src is not None and (REPO / cfg_src).is_file(),
                    "prometheus mounts its config at /etc/prometheus/prometheus.yml"):
        return None
    cfg = yaml.safe_load((REPO / cfg_src).read_text())
    targets = [t for job in cfg.get("scrape_configs", []) for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
    c.expect(f"legato:{legato_http}" in targets, f"prometheus scrapes legato:{legato_http}/metrics", f"targets {targets}")
    rules = cfg.get("rule_files", [])
    c.expect(bool(rules), "prometheus loads rule files")
    for rule_file in rules:
        src = mounts.get(rule_file)
        c.expect(src is not None and (REPO / src).resolve() == ALERTS.resolve(),
                 f"prometheus rule file {rule_file} is the chart's {ALERTS.relative_to(REPO)}", f"mounted from {src}")
    port = next((int(p.split("/")[0]) for p in host_ports(prom)), 9090)
    return ("prometheus", port)


def check_compose_dashboards(c: Checker, graf: dict) -> None:
    """A dashboards provider whose path is the chart's dashboards directory, mounted."""
    mounts = {tgt: src for src, tgt in bind_mounts(graf)}
    providers = [src for tgt, src in mounts.items() if "provisioning/dashboards" in tgt]
    if not c.expect(len(providers) == 1 and (REPO / providers[0]).is_file(), "grafana mounts a dashboards provider file"):
        return
    for provider in yaml.safe_load((REPO / providers[0]).read_text())["providers"]:
        path = provider.get("options", {}).get("path")
        src = mounts.get(path)
        c.expect(provider.get("type") == "file" and src is not None and (REPO / src).resolve() == DASHBOARDS.resolve(),
                 f"grafana dashboards provider {provider.get('name')} reads {path}, the chart's {DASHBOARDS.relative_to(REPO)}",
                 f"mounted from {src}")


def check_datasources(c, ds: list, host: str, port: int, prometheus: tuple[str, int] | None = None) -> None:
    """Tempo data sources on Legato's HTTP API; Prometheus ones on its /prometheus API (or on
    `prometheus`, the server that scrapes Legato's /metrics), and every service-map data
    source uid names one of Legato's."""
    by_uid = {d.get("uid"): d for d in ds}
    for d in ds:
        url = d["url"]
        on_legato = host_of(url) == host and port_of(url) == port
        if d["type"] == "prometheus" and prometheus and (host_of(url), port_of(url)) == prometheus:
            c.ok(f"grafana data source {d['name']} -> {url} is the Prometheus scraping Legato")
            continue
        if d["type"] == "tempo":
            c.expect(on_legato, f"grafana data source {d['name']} -> {url} is Legato's HTTP API")
            uid = d.get("jsonData", {}).get("serviceMap", {}).get("datasourceUid")
            if uid is not None:
                target = by_uid.get(uid, {})
                c.expect(target.get("type") == "prometheus" and str(target.get("url", "")).rstrip("/").endswith("/prometheus"),
                         f"the service map of {d['name']} reads Legato's Prometheus API (data source {uid})")
        elif d["type"] == "prometheus":
            c.expect(on_legato and url.rstrip("/").endswith("/prometheus"),
                     f"grafana data source {d['name']} -> {url} is Legato's /prometheus API")
        else:
            c.expect(False, f"grafana data source {d['name']} has a known type", d["type"])


def expand_env(text: str, env: dict[str, str]) -> str:
    """The same ${VAR} / ${VAR:-default} expansion as legato -config.expand-env."""
    out, rest = [], text
    while "${" in rest:
        start = rest.index("${")
        end = rest.find("}", start)
        if end < 0:
            break
        out.append(rest[:start])
        name, _, default = rest[start + 2:end].partition(":-")
        out.append(env.get(name, default))
        rest = rest[end + 1:]
    out.append(rest)
    return "".join(out)


# ---------------------------------------------------------------------- dashboards and alerts

TEMPLATE_DS = {"type": "prometheus", "uid": "${datasource}"}
SEVERITIES = {"critical", "warning", "info"}
# A selector of a legato metric, with its matchers and whether a range follows.
SELECTOR = re.compile(r"\b(legato_\w+)\s*(\{[^}]*\})?\s*(\[)?")


def walk_panels(panels: list):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def counter_misuse(expr: str) -> list[str]:
    """Counter and histogram series used without a range (so not under rate() or increase()),
    and _bucket series outside histogram_quantile."""
    out = []
    for m in SELECTOR.finditer(expr):
        name, ranged = m.group(1), m.group(3)
        if name.endswith(("_total", "_bucket", "_count", "_sum")) and not ranged:
            out.append(f"{name} without a range (rate/increase)")
        if name.endswith("_bucket") and "histogram_quantile" not in expr:
            out.append(f"{name} outside histogram_quantile")
    return out


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def check_dashboards(c: Checker) -> None:
    c.section(f"dashboards: {DASHBOARDS.relative_to(REPO)}")
    files = sorted(DASHBOARDS.glob("*.json"))
    c.expect(bool(files), "there are dashboards")
    uids: dict[str, str] = {}
    titles: dict[str, str] = {}
    for path in files:
        name = path.name
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            c.fail(f"{name} is JSON", str(e))
            continue
        uid, title = d.get("uid"), d.get("title")
        c.expect(bool(uid) and uid not in uids, f"{name}: uid {uid} is unique", f"also in {uids.get(uid)}")
        c.expect(bool(title) and title not in titles, f"{name}: title {title!r} is unique", f"also in {titles.get(title)}")
        uids[uid], titles[title] = name, name
        c.expect(isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 36, f"{name}: schemaVersion {d.get('schemaVersion')}")
        c.expect("id" not in d or d["id"] is None, f"{name}: no fixed numeric id (Grafana assigns one)")
        variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
        ds_var = variables.get("datasource", {})
        c.expect(ds_var.get("type") == "datasource" and ds_var.get("query") == "prometheus",
                 f"{name}: a $datasource variable choosing a Prometheus data source")
        for v in variables.values():
            if v.get("type") == "query":
                c.expect(v.get("datasource") == TEMPLATE_DS, f"{name}: variable {v['name']} queries ${{datasource}}", f"got {v.get('datasource')}")
        ids: set = set()
        queries = 0
        for p in walk_panels(d.get("panels", [])):
            what = f"{name}: panel {p.get('title')!r}"
            c.expect(p.get("id") not in ids, f"{what}: id {p.get('id')} is unique")
            ids.add(p.get("id"))
            grid = p.get("gridPos", {})
            c.expect(grid.get("x", 0) + grid.get("w", 0) <= 24, f"{what}: fits in 24 columns")
            if p.get("type") == "row":
                continue
            c.expect(p.get("datasource") == TEMPLATE_DS, f"{what}: data source is ${{datasource}}", f"got {p.get('datasource')}")
            targets = p.get("targets", [])
            c.expect(bool(targets), f"{what}: has queries")
            refs = [t.get("refId") for t in targets]
            c.expect(len(set(refs)) == len(refs), f"{what}: refIds {refs} are unique")
            for t in targets:
                queries += 1
                c.expect(t.get("datasource") == TEMPLATE_DS, f"{what} {t.get('refId')}: data source is ${{datasource}}")
                misuse = counter_misuse(t.get("expr", ""))
                c.expect(bool(t.get("expr")) and not misuse, f"{what} {t.get('refId')}: PromQL over counters uses rate/increase", "; ".join(misuse) or "no expr")
        c.ok(f"{name}: {len(ids)} panels, {queries} queries", always=True)


def check_alerts(c: Checker) -> None:
    c.section(f"alerts: {ALERTS.relative_to(REPO)}")
    doc = yaml.safe_load(ALERTS.read_text())
    headings = re.findall(r"^#+\s+(.+?)\s*$", OPERATIONS.read_text(), re.M)
    anchors = {github_anchor(h) for h in headings}
    names: set = set()
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            alert = rule.get("alert")
            c.expect(bool(alert) and alert not in names, f"alert {alert}: name is unique")
            names.add(alert)
            c.expect(rule.get("labels", {}).get("severity") in SEVERITIES, f"alert {alert}: severity is one of {sorted(SEVERITIES)}")
            ann = rule.get("annotations", {})
            c.expect(bool(ann.get("summary")) and bool(ann.get("description")), f"alert {alert}: summary and description")
            url = ann.get("runbook_url", "")
            path, _, anchor = url.partition("#")
            c.expect(path == "docs/operations.md" and anchor in anchors,
                     f"alert {alert}: runbook_url {url} is a heading of docs/operations.md")
            misuse = counter_misuse(rule.get("expr", ""))
            c.expect(not misuse, f"alert {alert}: counters under rate/increase", "; ".join(misuse))
    c.ok(f"{len(names)} alerts in {len(doc.get('groups', []))} groups", always=True)
    promtool = shutil.which("promtool")
    if not promtool:
        print("  skip  promtool not installed (ci/setup.sh installs Debian's prometheus package)")
        return
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERT_TESTS)]):
        proc = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=REPO)
        shown = " ".join(a.replace(f"{REPO}/", "") for a in args)
        c.expect(proc.returncode == 0, f"promtool {shown}", (proc.stdout + proc.stderr).strip()[-2000:])


def expected_rules(values: dict) -> dict:
    """The chart's alert rules with prometheusRule.runbookBaseUrl applied."""
    rules = yaml.safe_load(ALERTS.read_text())
    base = values.get("prometheusRule", {}).get("runbookBaseUrl", "")
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["annotations"]["runbook_url"] = base + rule["annotations"]["runbook_url"]
    return rules


def check_prometheusrule(c: Checker, rule: dict, values: dict) -> None:
    """No Kubernetes schema for the CRD here: the rules are the chart's file, and promtool
    accepts them as rendered."""
    name = f"PrometheusRule/{rule['metadata']['name']}"
    c.expect(rule["apiVersion"] == "monitoring.coreos.com/v1", f"{name}: monitoring.coreos.com/v1")
    c.expect(rule.get("spec") == expected_rules(values), f"{name}: spec is {ALERTS.relative_to(REPO)} (runbookBaseUrl applied)")
    check_rendered_rules(c, name, rule.get("spec", {}))


def check_rendered_rules(c: Checker, what: str, rules: dict) -> None:
    promtool = shutil.which("promtool")
    if not promtool:
        return
    path = c.tmp / f"rules-{c.passed + len(c.failed)}.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    c.expect(proc.returncode == 0, f"{what}: promtool check rules", (proc.stdout + proc.stderr).strip()[-2000:])


# ------------------------------------------------------------------------------------- helm

def merged(base: dict, over: dict) -> dict:
    """Values as Helm merges them: `over` wins, maps are merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def pod_matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_scenario(c: Checker, name: str, values_file: str | None, targets: set[str]) -> None:
    c.section(f"helm: {name}" + (f" ({values_file})" if values_file else ""))
    values = helm.values_from_yaml((CHART / values_file).read_text()) if values_file else {}
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] > 1] + [{"error": e} for e in report.get("errors", [])]
    c.expect(not problems, "helm lint --strict", "; ".join(str(p.get("error")) for p in problems))

    try:
        with helm.Chart.load(str(CHART)) as chart:
            rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.HelmError as e:
        c.fail("helm template", str(e))
        return
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    c.ok(f"helm template: {len(docs)} manifests: {', '.join(kinds)}", always=True)

    for d in docs:
        kn = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "ServiceMonitor":
            check_servicemonitor(c, d, docs)
            continue
        if d["kind"] == "PrometheusRule":
            check_prometheusrule(c, d, values)
            continue
        try:
            for v in KUBE_VERSIONS:
                kubernetes_validate.validate(d, v, strict=True)
            c.ok(f"{kn} valid against Kubernetes {' and '.join(KUBE_VERSIONS)} schemas (strict)")
        except kubernetes_validate.ValidationError as e:
            c.fail(f"{kn} schema", f"{'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            c.fail(f"{kn} schema", str(e))

    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    configmaps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    accounts = by_kind.get("ServiceAccount", {})
    workloads = {**by_kind.get("Deployment", {}), **by_kind.get("StatefulSet", {})}

    # Grafana's data sources point at the Service that answers queries, and its http port.
    for cname, cm in configmaps.items():
        if not cname.endswith("-grafana-datasources"):
            continue
        for key, text in cm["data"].items():
            ds = yaml.safe_load(text)["datasources"]
            host = host_of(ds[0]["url"])
            svc = by_kind.get("Service", {}).get(host.split(".", 1)[0])
            ports = [p["port"] for p in (svc or {}).get("spec", {}).get("ports", []) if p.get("name") == "http"]
            if c.expect(bool(ports), f"{cname}/{key}: {host} is a rendered Service with an http port"):
                check_datasources(c, ds, host, ports[0])

    # Dashboards and alert rules are the chart's files, as they are.
    chart_values = merged(yaml.safe_load((CHART / "values.yaml").read_text()), values)
    dashboards = configmaps.get(f"{RELEASE}-dashboards")
    if chart_values.get("dashboards", {}).get("enabled"):
        files = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
        c.expect(dashboards is not None and dashboards.get("data") == files,
                 f"ConfigMap/{RELEASE}-dashboards holds {DASHBOARDS.relative_to(REPO)}/*.json unchanged")
        labels = (dashboards or {}).get("metadata", {}).get("labels", {})
        c.expect(labels.get("grafana_dashboard") == "1", f"ConfigMap/{RELEASE}-dashboards has the Grafana sidecar label")
    else:
        c.expect(dashboards is None, "dashboards.enabled false: no dashboards ConfigMap")
    rule_values = chart_values.get("prometheusRule", {})
    c.expect(("PrometheusRule" in by_kind) == bool(rule_values.get("enabled")),
             f"PrometheusRule rendered exactly when prometheusRule.enabled ({bool(rule_values.get('enabled'))})")
    rules_cm = configmaps.get(f"{RELEASE}-alert-rules")
    if rule_values.get("configMap", {}).get("enabled"):
        text = (rules_cm or {}).get("data", {}).get("legato-alerts.yaml", "")
        ok = rules_cm is not None and yaml.safe_load(text) == expected_rules(chart_values)
        c.expect(ok, f"ConfigMap/{RELEASE}-alert-rules holds {ALERTS.relative_to(REPO)}")
        if ok:
            check_rendered_rules(c, f"ConfigMap/{RELEASE}-alert-rules", yaml.safe_load(text))
    else:
        c.expect(rules_cm is None, "prometheusRule.configMap.enabled false: no alert rules ConfigMap")

    seen_targets = set()
    for wname, w in workloads.items():
        pod = w["spec"]["template"]
        spec = pod["spec"]
        labels = pod["metadata"].get("labels", {})
        c.expect(pod_matches(w["spec"]["selector"]["matchLabels"], labels), f"{wname}: selector matches its pod labels")
        c.expect("checksum/config" in pod["metadata"].get("annotations", {}), f"{wname}: config checksum annotation")
        sa = spec.get("serviceAccountName")
        c.expect(sa in accounts, f"{wname}: service account {sa} is rendered")
        (ctr,) = spec["containers"]
        probe = ctr.get("readinessProbe", {}).get("httpGet", {})
        c.expect(probe.get("path") == "/ready", f"{wname}: readiness probe on /ready")
        args = ctr["args"]
        target = next(a.split("=", 1)[1] for a in args if a.startswith("-target="))
        seen_targets.add(target)
        mount = next(m for m in ctr["volumeMounts"] if m["name"] == "config")
        vol = next(v for v in spec["volumes"] if v["name"] == "config")
        cm = configmaps.get(vol["configMap"]["name"])
        if not c.expect(cm is not None, f"{wname}: ConfigMap {vol['configMap']['name']} is rendered"):
            continue
        cfg_file = next(a.split("=", 1)[1] for a in args if a.startswith("-config.file="))
        key = os.path.relpath(cfg_file, mount["mountPath"])
        config_text = cm["data"].get(key)
        if not c.expect(config_text is not None, f"{wname}: -config.file={cfg_file} is key {key} of the ConfigMap"):
            continue
        env = {}
        for e in ctr.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                s = secrets.get(ref["name"])
                if s is not None:
                    c.expect(ref["key"] in s.get("stringData", {}), f"{wname}: env {e['name']} from Secret {ref['name']} key {ref['key']}")
                env[e["name"]] = f"dummy-{e['name'].lower()}"
            else:
                env[e["name"]] = str(e.get("value", ""))
        c.verify_config(wname, config_text, args, env)
        cfg = yaml.safe_load(expand_env(config_text, env))
        wal = cfg["storage"]["trace"]["wal"]["path"]
        if "eks.amazonaws.com/role-arn" in (accounts[sa]["metadata"].get("annotations") or {}):
            s3 = cfg["storage"]["trace"].get("s3", {})
            c.expect(not s3.get("access_key") and not s3.get("secret_key") and not env,
                     f"{wname}: IRSA service account, no static S3 keys (AWS default credential chain)")
        trace = cfg["storage"]["trace"]
        key_file = trace.get("gcs", {}).get("service_account") if trace["backend"] == "gcs" else None
        if key_file:
            mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
            secret_vols = {v["name"] for v in spec["volumes"] if "secret" in v}
            c.expect(any(n in secret_vols and os.path.dirname(key_file) == p for n, p in mounts.items()),
                     f"{wname}: GCS key {key_file} is in a mounted Secret volume", f"mounts {mounts}")
        if trace["backend"] == "azure" and not trace["azure"].get("use_managed_identity") \
                and not trace["azure"].get("use_federated_token") and not trace["azure"].get("user_assigned_id"):
            c.expect("AZURE_STORAGE_KEY" in env, f"{wname}: Azure shared key from a Secret (AZURE_STORAGE_KEY)")
        if target in ("distributor", "all"):
            check_receivers(c, wname, cfg, ctr, chart_values, by_kind.get("Service", {}), labels)
        rf = cfg.get("ingester", {}).get("lifecycler", {}).get("ring", {}).get("replication_factor")
        if target == "all":
            c.expect(rf == 1, f"{wname}: single binary has replication factor 1", f"got {rf}")
        if w["kind"] == "StatefulSet" and target in ("ingester", "all"):
            claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
            data = [m for m in ctr["volumeMounts"] if m["name"] in claims]
            c.expect(any(wal == m["mountPath"] or wal.startswith(m["mountPath"].rstrip("/") + "/") for m in data),
                     f"{wname}: WAL {wal} is on a persistent volume claim", f"claims {claims}, mounts {ctr['volumeMounts']}")
            grace = spec.get("terminationGracePeriodSeconds", 30)
            c.expect(grace >= 120, f"{wname}: terminationGracePeriodSeconds {grace} leaves time to flush")
        if target != "all":
            join = cfg.get("memberlist", {}).get("join_members", [])
            c.expect(bool(join), f"{wname}: memberlist.join_members set")
            for member in join:
                svc_name = host_of(member).split(".")[0]
                gossip = by_kind.get("Service", {}).get(svc_name)
                ok = (gossip is not None and gossip["spec"].get("clusterIP") == "None"
                      and gossip["spec"].get("publishNotReadyAddresses") is True
                      and host_of(member) == f"{svc_name}.{NAMESPACE}.svc.cluster.local"
                      and {(p["port"], p.get("protocol", "TCP")) for p in gossip["spec"]["ports"]}
                      >= {(port_of(member), "TCP"), (port_of(member), "UDP")}
                      and pod_matches(gossip["spec"]["selector"], labels))
                c.expect(ok, f"{wname}: joins {member}, a headless not-ready-publishing service on TCP+UDP selecting it")
    c.expect(seen_targets == targets, f"workload targets {sorted(seen_targets)}", f"expected {sorted(targets)}")

    for sname, svc in by_kind.get("Service", {}).items():
        pods = [w["spec"]["template"] for w in workloads.values()
                if pod_matches(svc["spec"]["selector"], w["spec"]["template"]["metadata"].get("labels", {}))]
        if not c.expect(bool(pods), f"Service/{sname} selects a workload"):
            continue
        names = {p["name"] for pod in pods for ctr in pod["spec"]["containers"] for p in ctr.get("ports", [])}
        missing = [p["targetPort"] for p in svc["spec"]["ports"] if isinstance(p["targetPort"], str) and p["targetPort"] not in names]
        c.expect(not missing, f"Service/{sname} target ports exist on its pods", f"missing {missing}")
    for hname, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        ref = hpa["spec"]["scaleTargetRef"]
        dep = by_kind.get(ref["kind"], {}).get(ref["name"])
        c.expect(dep is not None and "replicas" not in dep["spec"], f"HPA/{hname} scales {ref['kind']}/{ref['name']}, which leaves replicas to it")
    for pname, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        sel = pdb["spec"]["selector"]["matchLabels"]
        c.expect(any(pod_matches(sel, w["spec"]["template"]["metadata"]["labels"]) for w in workloads.values()),
                 f"PDB/{pname} selects a workload")


# receivers.<value key> → (config path under distributor.receivers, port name, protocol)
RECEIVERS = {
    ("zipkin",): (("zipkin",), "zipkin", "TCP"),
    ("jaeger", "grpc"): (("jaeger", "protocols", "grpc"), "jaeger-grpc", "TCP"),
    ("jaeger", "thriftHttp"): (("jaeger", "protocols", "thrift_http"), "jaeger-http", "TCP"),
    ("jaeger", "thriftCompact"): (("jaeger", "protocols", "thrift_compact"), "jaeger-compact", "UDP"),
    ("jaeger", "thriftBinary"): (("jaeger", "protocols", "thrift_binary"), "jaeger-binary", "UDP"),
}


def check_receivers(c: Checker, wname: str, cfg: dict, ctr: dict, values: dict, services: dict, labels: dict) -> None:
    """Each enabled Jaeger/Zipkin receiver is in the config, on the container and on the Service
    selecting it, with its port and protocol; a disabled one is nowhere."""
    for value_path, (cfg_path, port_name, protocol) in RECEIVERS.items():
        v = values.get("receivers", {})
        for k in value_path:
            v = v.get(k, {})
        node = cfg["distributor"]["receivers"]
        for k in cfg_path:
            node = (node or {}).get(k)
        what = f"{wname}: receiver {'.'.join(value_path)}"
        ctr_ports = {p["name"]: p for p in ctr.get("ports", [])}
        svc_ports = [p for svc in services.values() if pod_matches(svc["spec"].get("selector", {}), labels)
                     for p in svc["spec"]["ports"] if p.get("targetPort") == port_name]
        if not v.get("enabled"):
            c.expect(node is None and port_name not in ctr_ports and not svc_ports, f"{what} off: not configured, no port")
            continue
        c.expect(node is not None and port_of(node["endpoint"]) == v["port"], f"{what}: endpoint on port {v['port']}", f"got {node}")
        p = ctr_ports.get(port_name, {})
        c.expect(p.get("containerPort") == v["port"] and p.get("protocol") == protocol,
                 f"{what}: container port {port_name} {v['port']}/{protocol}", f"got {p}")
        c.expect(any(sp["port"] == v["port"] and sp.get("protocol") == protocol for sp in svc_ports),
                 f"{what}: a Service exposes {v['port']}/{protocol}", f"got {svc_ports}")


def check_servicemonitor(c: Checker, sm: dict, docs: list[dict]) -> None:
    """No Kubernetes schema for the CRD here: check what the Prometheus Operator needs."""
    spec = sm.get("spec", {})
    sel = spec.get("selector", {}).get("matchLabels", {})
    services = [d for d in docs if d["kind"] == "Service" and pod_matches(sel, d["metadata"].get("labels", {}))]
    eps = spec.get("endpoints", [])
    ok = (sm["apiVersion"] == "monitoring.coreos.com/v1" and eps and services
          and all(e.get("path") == "/metrics" for e in eps)
          and all(any(p["name"] == e.get("port") for p in s["spec"]["ports"]) for e in eps for s in services))
    c.expect(bool(ok), f"ServiceMonitor/{sm['metadata']['name']} scrapes /metrics on {len(services)} services by port name")


# ------------------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--legato", default=str(REPO / "target" / "debug" / "legato"), help="the legato binary")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every passed check")
    args = ap.parse_args()
    c = Checker(Path(args.legato).resolve(), args.verbose)
    started = time.monotonic()
    print(f"deploy-check: Helm {helm.helm_sdk_version()} (helm-python-sdk), kubernetes-validate schemas "
          f"{', '.join(KUBE_VERSIONS)}, binary {args.legato}")

    # The binary must refuse a bad config, or every "config ok" below means nothing.
    bad = c.tmp / "bad.yaml"
    bad.write_text("ingester:\n  trace_idle_periodd: 5s\n")
    proc = subprocess.run([str(c.legato), f"-config.file={bad}", "-config.verify"], capture_output=True, text=True, timeout=30)
    c.expect(proc.returncode != 0 and "trace_idle_periodd" in proc.stderr + proc.stdout,
             "legato -config.verify refuses an unknown key and names it", f"exit {proc.returncode}")

    check_dashboards(c)
    check_alerts(c)
    check_compose(c)
    for name, values_file, targets in SCENARIOS:
        check_scenario(c, name, values_file, targets)

    c.end_section()
    shutil.rmtree(c.tmp, ignore_errors=True)
    took = time.monotonic() - started
    print(f"deploy-check: {c.passed} passed, {len(c.failed)} failed in {took:.1f}s")
    for f in c.failed:
        print(f"  FAIL  {f}")
    if c.failed:
        print("(python3 deploy/check.py -v prints every check)")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
