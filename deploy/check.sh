#!/usr/bin/env bash
# Validates the deployment files without a container engine or a cluster: YAML/JSON syntax, schemas where a
# schema ships in a package (compose-spec via check-jsonschema, Kubernetes via kubernetes-validate), the
# dashboard's and alert rules' metric names against rwsplit's metric contract, cross-references between files
# (depends_on, mounts, selectors, ports, Secret keys vs password_env), `rwsplit --check` on the shipped
# configurations, `systemd-analyze verify`/`security` on the unit, and the Dockerfile's EXPOSE/HEALTHCHECK.
#
#   deploy/check.sh                 one line per check, then "N passed, N failed, N skipped"; exit 1 on a failure
#
# The Dockerfile's builder stage is emulated (its COPY and RUN steps in a scratch directory, a few minutes the
# first time, cached in target/docker-builder after that); the runtime stage is checked statically.
# Environment: RWSPLIT_BIN=PATH uses that binary instead of target/release/rwsplit (built if missing);
# CHECK_NO_INSTALL=1 never runs pip/apt (missing optional validators are then skipped);
# CHECK_SKIP_IMAGE_BUILD=1 skips the builder-stage emulation.
# Not verifiable here (no container engine, no cluster, no network): building the image, starting the compose
# stack, replication actually coming up, Grafana rendering the dashboard, applying the manifests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

PASSED=0
FAILED=0
SKIPPED=0
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

pass() {
    PASSED=$((PASSED + 1))
    printf 'ok    %s\n' "$1"
}
fail() {
    FAILED=$((FAILED + 1))
    printf 'FAIL  %s\n' "$1"
    [[ -z "${2:-}" ]] || printf '%s\n' "$2" | sed 's/^/        /'
}
skip() {
    SKIPPED=$((SKIPPED + 1))
    printf 'skip  %s: %s\n' "$1" "$2"
}
# check NAME CMD...: runs CMD, passes if it exits 0, shows its output indented if it fails.
check() {
    local name="$1" out
    shift
    if out="$("$@" 2>&1)"; then
        pass "$name"
    else
        fail "$name" "$out"
    fi
}

# ---- tools --------------------------------------------------------------------------------------------------

have_py() { python3 -c "import $1" >/dev/null 2>&1; }
# pip_get MODULE PACKAGE: make a Python module importable, installing PACKAGE from PyPI if allowed.
pip_get() {
    have_py "$1" && return 0
    [[ "${CHECK_NO_INSTALL:-0}" == 1 ]] && return 1
    python3 -m pip install --quiet --disable-pip-version-check "$2" >/dev/null 2>&1 || true
    have_py "$1"
}

command -v python3 >/dev/null || {
    echo "check.sh: python3 is required" >&2
    exit 1
}
if ! pip_get yaml pyyaml; then
    if [[ "${CHECK_NO_INSTALL:-0}" != 1 ]] && command -v apt-get >/dev/null; then
        apt-get install -y -qq python3-yaml >/dev/null 2>&1 || true
    fi
    have_py yaml || {
        echo "check.sh: PyYAML is required (pip install pyyaml, or apt-get install python3-yaml)" >&2
        exit 1
    }
fi

RWSPLIT="${RWSPLIT_BIN:-$ROOT/target/release/rwsplit}"
if [[ ! -x "$RWSPLIT" ]]; then
    echo "check.sh: building rwsplit (cargo build --release --bin rwsplit)" >&2
    cargo build --release --locked --bin rwsplit >&2 || true
fi

# The structural checks live in one Python program; each subcommand exits 0 or prints problems and exits 1.
PY="$WORK/checks.py"
cat >"$PY" <<'PYTHON'
import json, os, re, sys
import yaml

ROOT = os.getcwd()
problems = []

def bad(msg):
    problems.append(msg)

def load(path):
    with open(path) as f:
        return yaml.safe_load(f)

def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]

# ---- rwsplit's metric contract -------------------------------------------------------------------------------
METRICS = {
    "rwsplit_queries_total", "rwsplit_query_duration_seconds", "rwsplit_client_connections",
    "rwsplit_backend_connections", "rwsplit_replica_lag_seconds", "rwsplit_backend_up",
    "rwsplit_config_reloads_total", "rwsplit_config_last_reload_success_timestamp_seconds",
    "rwsplit_errors_total", "rwsplit_consistent_reads_total", "rwsplit_consistency_wait_seconds",
    "rwsplit_login_failures_total", "rwsplit_client_connections_refused_total",
    "rwsplit_replica_io_running", "rwsplit_replica_sql_running", "rwsplit_replica_binlog_behind_bytes",
    "rwsplit_semisync_master_status", "rwsplit_semisync_master_clients", "rwsplit_probe_duration_seconds",
}
HISTOGRAMS = {"rwsplit_query_duration_seconds", "rwsplit_consistency_wait_seconds"}
SERIES = (METRICS - HISTOGRAMS) | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
LABELS = {
    "rwsplit_queries_total": {"route", "backend", "reason"},
    "rwsplit_query_duration_seconds_bucket": {"route", "le"},
    "rwsplit_query_duration_seconds_sum": {"route"},
    "rwsplit_query_duration_seconds_count": {"route"},
    "rwsplit_client_connections": set(),
    "rwsplit_backend_connections": {"backend", "state"},
    "rwsplit_replica_lag_seconds": {"backend"},
    "rwsplit_backend_up": {"backend", "role"},
    "rwsplit_config_reloads_total": {"result"},
    "rwsplit_config_last_reload_success_timestamp_seconds": set(),
    "rwsplit_errors_total": {"kind"},
    "rwsplit_login_failures_total": {"user"},
    "rwsplit_client_connections_refused_total": {"reason"},
    "rwsplit_replica_io_running": {"backend"},
    "rwsplit_replica_sql_running": {"backend"},
    "rwsplit_replica_binlog_behind_bytes": {"backend"},
    "rwsplit_semisync_master_status": {"backend"},
    "rwsplit_semisync_master_clients": {"backend"},
    "rwsplit_probe_duration_seconds": {"backend"},
    "rwsplit_consistent_reads_total": {"outcome"},
    "rwsplit_consistency_wait_seconds_bucket": {"le"},
    "rwsplit_consistency_wait_seconds_sum": set(),
    "rwsplit_consistency_wait_seconds_count": set(),
}
TARGET_LABELS = {"instance", "job"}   # added by Prometheus to every scraped series
LABEL_VALUES = {
    "route": {"master", "replica"},
    "result": {"ok", "rejected"},
    "kind": {"client_protocol", "backend_connect", "backend_query", "auth_failure"},
    "role": {"master", "replica"},
    "outcome": {"caught_up", "waited", "master", "timed_out"},
}
AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
               "topk", "quantile", "limitk", "limit_ratio"}
FUNCTIONS = AGGREGATORS | {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_quantile",
    "histogram_count", "histogram_sum", "histogram_fraction", "holt_winters", "hour", "idelta", "increase",
    "irate", "label_join", "label_replace", "ln", "log2", "log10", "minute", "month", "predict_linear", "rate",
    "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "time", "timestamp", "vector", "year",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time", "present_over_time",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
CLAUSES = r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"

def promql_names(expr, extra=()):
    """Metric names an expression selects; unknown functions and unknown metrics are reported."""
    out = []
    s = re.sub(r"\$\{?\w+(:\w+)?\}?", "1", expr)                 # Grafana variables
    labels_used = []
    for sel in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}", s):
        for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"", sel.group(2)):
            labels_used.append((sel.group(1), m.group(1), m.group(2), m.group(3)))
    s = re.sub(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'", "\"\"", s)  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)                               # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                              # range selectors
    grouping = [g.strip() for c in re.finditer(CLAUSES, s) for g in c.group(2).split(",") if g.strip()]
    s = re.sub(CLAUSES, " ", s)
    s = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?(ms|s|m|h|d|w|y)?\b", "1", s)  # numbers, durations
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        tok = m.group(0)
        if tok in KEYWORDS:
            continue
        if s[m.end():].lstrip().startswith("("):
            if tok not in FUNCTIONS:
                bad(f"unknown PromQL function '{tok}' in: {expr}")
            continue
        if tok not in SERIES and tok not in extra:
            bad(f"metric '{tok}' is not in rwsplit's metric contract, in: {expr}")
        out.append(tok)
    names = [n for n in out if n in SERIES]
    known = set().union(*(LABELS[n] for n in names)) | TARGET_LABELS if names else None
    for metric, label, op, value in labels_used:
        if known is not None and label not in known and label != "__name__":
            bad(f"label '{label}' is not a label of {sorted(names)}, in: {expr}")
        if op in ("=", "!=") and label in LABEL_VALUES and value not in LABEL_VALUES[label]:
            bad(f"{label}=\"{value}\" is not a documented value ({sorted(LABEL_VALUES[label])}), in: {expr}")
    for g in grouping:
        if known is not None and g not in known:
            bad(f"grouping label '{g}' is not a label of {sorted(names)}, in: {expr}")
    return out

def base_metric(series):
    """rwsplit_query_duration_seconds_bucket -> rwsplit_query_duration_seconds."""
    for suffix in ("_bucket", "_sum", "_count"):
        if series.endswith(suffix) and series[: -len(suffix)] in HISTOGRAMS:
            return series[: -len(suffix)]
    return series

# ---- subcommands ---------------------------------------------------------------------------------------------
def cmd_yaml(path):
    load_all(path)

def cmd_dashboard(path):
    with open(path) as f:
        d = json.load(f)
    if d.get("schemaVersion", 0) < 36:
        bad(f"schemaVersion {d.get('schemaVersion')} < 36")
    for key in ("uid", "title", "panels", "templating"):
        if key not in d:
            bad(f"missing top-level '{key}'")
    variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    ds_vars = [v for v in variables.values() if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    if not ds_vars:
        bad("no Prometheus data source variable (templating: type datasource, query prometheus)")
    ds_ref = "${%s}" % ds_vars[0]["name"] if ds_vars else None
    for v in variables.values():
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            m = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*\w+\s*\)\s*", q)
            if not m or m.group(1) not in SERIES:
                bad(f"variable '{v['name']}': query '{q}' is not label_values(<rwsplit metric>, label)")
    ids, used, exprs = set(), set(), []
    def walk(panels):
        for p in panels:
            if p.get("id") in ids:
                bad(f"duplicate panel id {p.get('id')}")
            ids.add(p.get("id"))
            gp = p.get("gridPos", {})
            if not all(k in gp for k in ("h", "w", "x", "y")) or gp.get("x", 0) + gp.get("w", 0) > 24:
                bad(f"panel '{p.get('title')}': bad gridPos {gp}")
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            targets = p.get("targets") or []
            if not targets:
                bad(f"panel '{p.get('title')}' has no queries")
            for t in targets:
                ds = t.get("datasource") or p.get("datasource") or {}
                if ds_ref and ds.get("uid") != ds_ref:
                    bad(f"panel '{p.get('title')}' query {t.get('refId')}: datasource {ds} is not {ds_ref}")
                if not t.get("expr"):
                    bad(f"panel '{p.get('title')}' query {t.get('refId')}: no expr")
                    continue
                exprs.append((p.get("title"), t["expr"]))
                used.update(promql_names(t["expr"]))
    walk(d.get("panels", []))
    for a in d.get("annotations", {}).get("list", []):
        if a.get("expr"):
            used.update(promql_names(a["expr"]))
    covered = {base_metric(n) for n in used}
    for m in sorted(METRICS - covered):
        bad(f"metric {m} is shown by no panel")
    text = " ".join(e for _, e in exprs)
    for q in ("0.50", "0.95", "0.99"):
        if f"histogram_quantile({q}" not in text:
            bad(f"no p{q[2:]} latency query (histogram_quantile({q}, ...))")
    for by in ("route", "reason"):
        if not any(re.search(rf"by \({by}\)", e) and "rwsplit_queries_total" in e for _, e in exprs):
            bad(f"no queries/s by {by} panel")
    if not any("vector($max_replica_lag)" in e for _, e in exprs):
        bad("replica lag panel lacks the max-lag threshold series")
    print(f"{len(ids)} panels, {len(exprs)} queries, metrics {sorted(covered)}")

def cmd_dashboard_rules(path, out):
    """Writes every dashboard expression, Grafana variables replaced by sample values, as a recording rule."""
    d = json.load(open(path))
    subst = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "$instance": ".*", "$route": ".*",
             "$max_replica_lag": "2"}
    exprs = []
    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
    walk(d["panels"])
    exprs += [a["expr"] for a in d.get("annotations", {}).get("list", []) if a.get("expr")]
    rules = []
    for i, e in enumerate(exprs):
        for k in sorted(subst, key=len, reverse=True):
            e = e.replace(k, subst[k])
        rules.append({"record": f"dashboard:query_{i}", "expr": e})
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(out, "w"))
    print(f"{len(rules)} expressions")

def cmd_alerts(path):
    doc = load(path)
    n = 0
    for g in doc["groups"]:
        for r in g["rules"]:
            n += 1
            for k in ("alert", "expr"):
                if k not in r:
                    bad(f"rule {r} has no '{k}'")
            promql_names(str(r.get("expr", "")), extra={"up"})
    print(f"{n} rules")

def published_container_ports(svc):
    out = set()
    for p in svc.get("ports", []):
        out.add(int(str(p.get("target") if isinstance(p, dict) else p).split(":")[-1].split("/")[0]))
    return out

def cmd_compose(path):
    c = load(path)
    base = os.path.dirname(path)
    services = c.get("services", {})
    for name, s in services.items():
        dep = s.get("depends_on", {})
        deps = dep.items() if isinstance(dep, dict) else [(d, {}) for d in dep]
        for target, cond in deps:
            if target not in services:
                bad(f"{name}: depends_on unknown service '{target}'")
                continue
            cond = (cond or {}).get("condition", "service_started")
            if cond not in ("service_started", "service_healthy", "service_completed_successfully"):
                bad(f"{name}: depends_on {target}: unknown condition '{cond}'")
            t = services[target]
            has_hc = "healthcheck" in t or ("build" in t and "HEALTHCHECK" in open(os.path.join(
                base, t["build"].get("context", "."), t["build"].get("dockerfile", "Dockerfile"))).read())
            if cond == "service_healthy" and not has_hc:
                bad(f"{name}: waits for {target} to be healthy, but {target} has no healthcheck")
        for v in s.get("volumes", []):
            src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith((".", "/")):
                if not os.path.exists(os.path.normpath(os.path.join(base, src))):
                    bad(f"{name}: bind mount source {src} does not exist")
            elif src and src not in (c.get("volumes") or {}):
                bad(f"{name}: named volume {src} is not declared under volumes:")
        if "build" in s:
            ctx = os.path.normpath(os.path.join(base, s["build"].get("context", ".")))
            if not os.path.isfile(os.path.join(ctx, s["build"].get("dockerfile", "Dockerfile"))):
                bad(f"{name}: no Dockerfile in build context {ctx}")
    # MariaDB topology: unique server ids, replicas read-only and wired with GTID.
    ids = {}
    for name, s in services.items():
        if str(s.get("image", "")).startswith("mariadb:"):
            if s["image"] != "mariadb:10.11":
                bad(f"{name}: image {s['image']} is not mariadb:10.11")
            flags = " ".join(map(str, s.get("command", [])))
            m = re.search(r"--server-id=(\d+)", flags)
            if not m:
                bad(f"{name}: no --server-id")
            elif m.group(1) in ids:
                bad(f"{name}: server id {m.group(1)} also used by {ids[m.group(1)]}")
            else:
                ids[m.group(1)] = name
            if "--log-bin" not in flags:
                bad(f"{name}: no --log-bin")
            if "healthcheck" not in s:
                bad(f"{name}: no healthcheck")
            if "replica" in name:
                if "--read-only=ON" not in flags:
                    bad(f"{name}: replica without --read-only=ON")
                scripts = [v.split(":")[0] for v in s.get("volumes", []) if "docker-entrypoint-initdb.d" in v]
                body = "".join(open(os.path.join(base, p)).read() for p in scripts)
                if "MASTER_USE_GTID=slave_pos" not in body or "START SLAVE" not in body:
                    bad(f"{name}: init scripts {scripts} do not CHANGE MASTER ... MASTER_USE_GTID=slave_pos / START SLAVE")
                if s.get("depends_on", {}).get("master", {}).get("condition") != "service_healthy":
                    bad(f"{name}: does not wait for a healthy master")
    if len(ids) != 3:
        bad(f"expected a master and 2 replicas, found MariaDB services {sorted(ids.values())}")
    # rwsplit: its config's ports are published, its mounted config is compose/proxy.yaml.
    rw = services.get("rwsplit")
    if not rw:
        bad("no rwsplit service")
        return
    cfg_path = os.path.join(base, "compose", "proxy.yaml")
    cfg = load(cfg_path)
    mounts = [v for v in rw.get("volumes", []) if isinstance(v, str) and ":/etc/rwsplit" in v]
    if not any(os.path.normpath(os.path.join(base, m.split(":")[0])) in (cfg_path, os.path.dirname(cfg_path)) for m in mounts):
        bad("rwsplit does not mount compose/proxy.yaml at /etc/rwsplit/proxy.yaml")
    ports = published_container_ports(rw)
    for key, addr in (("listen", cfg["listen"]), ("metrics.listen", cfg["metrics"]["listen"]),
                      ("admin.listen", cfg["admin"]["listen"])):
        host, port = addr.rsplit(":", 1)
        if host != "0.0.0.0":
            bad(f"compose/proxy.yaml {key} {addr}: must listen on 0.0.0.0 inside a container")
        if int(port) not in ports:
            bad(f"compose/proxy.yaml {key} port {port} is not published by the rwsplit service")
    for key in ("master",):
        host = cfg[key]["address"].rsplit(":", 1)[0]
        if host not in services:
            bad(f"compose/proxy.yaml {key}.address {host} is not a compose service")
    for r in cfg.get("replicas", []):
        if r["address"].rsplit(":", 1)[0] not in services:
            bad(f"compose/proxy.yaml replica {r['address']} is not a compose service")
    grace = cfg.get("shutdown_grace", "10s")
    if parse_secs(str(rw.get("stop_grace_period", "10s"))) <= parse_secs(grace):
        bad(f"rwsplit stop_grace_period {rw.get('stop_grace_period')} is not longer than shutdown_grace {grace}")
    # Prometheus scrapes rwsplit's metrics port by service name; Grafana gets the dashboard.
    prom = load(os.path.join(base, "compose", "prometheus.yml"))
    targets = [t for sc in prom["scrape_configs"] for st in sc.get("static_configs", []) for t in st["targets"]]
    want = "rwsplit:" + cfg["metrics"]["listen"].rsplit(":", 1)[1]
    if want not in targets:
        bad(f"prometheus.yml does not scrape {want} (targets {targets})")
    for rf in prom.get("rule_files", []):
        if not any(v.endswith(":" + rf) or (":" + rf + ":") in v for v in services["prometheus"].get("volumes", [])):
            bad(f"prometheus rule file {rf} is not mounted into the prometheus service")
    graf = " ".join(services.get("grafana", {}).get("volumes", []))
    if "rwsplit-dashboard.json" not in graf or "provisioning/dashboards" not in graf or "provisioning/datasources" not in graf:
        bad("grafana does not mount the dashboard and both provisioning files")
    prov = load(os.path.join(base, "compose", "grafana", "dashboards.yml"))
    dpath = prov["providers"][0]["options"]["path"]
    if f":{dpath}/rwsplit-dashboard.json" not in graf:
        bad(f"the dashboard is not mounted under the provider path {dpath}")
    print(f"services {sorted(services)}")

def parse_secs(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", s.strip())
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)] if m else 0

def k8s_docs(d):
    docs = {}
    for f in sorted(os.listdir(d)):
        if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml":
            for doc in load_all(os.path.join(d, f)):
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs

def cmd_k8s_extract(d, out):
    """Writes the ConfigMap's proxy.yaml to OUT and prints the password_env variable names."""
    cm = k8s_docs(d)[("ConfigMap", "rwsplit-config")]
    with open(out, "w") as f:
        f.write(cm["data"]["proxy.yaml"])
    cfg = yaml.safe_load(cm["data"]["proxy.yaml"])
    env = [u["password_env"] for u in cfg.get("users", []) if "password_env" in u]
    env += [cfg[k]["password_env"] for k in ("health", "admin") if k in cfg and "password_env" in cfg[k]]
    print(" ".join(env))

def cmd_k8s(d):
    docs = k8s_docs(d)
    kz = load(os.path.join(d, "kustomization.yaml"))
    for r in kz.get("resources", []):
        if not os.path.exists(os.path.join(d, r)):
            bad(f"kustomization resource {r} does not exist")
    listed = set(kz.get("resources", []))
    for f in os.listdir(d):
        if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml" and f not in listed:
            bad(f"{f} is not listed in kustomization.yaml")
    dep = docs.get(("Deployment", "rwsplit"))
    if not dep:
        bad("no Deployment rwsplit")
        return
    spec = dep["spec"]
    tmpl = spec["template"]
    labels = tmpl["metadata"]["labels"]
    def selects(sel):
        return sel and all(labels.get(k) == v for k, v in sel.items())
    if spec.get("replicas") != 3:
        bad(f"Deployment replicas {spec.get('replicas')} != 3")
    if not selects(spec["selector"]["matchLabels"]):
        bad("Deployment selector does not match its pod labels")
    pod = tmpl["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "rwsplit"]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for (kind, name), doc in docs.items():
        if kind == "Service":
            if not selects(doc["spec"]["selector"]):
                bad(f"Service {name} selects no rwsplit pod")
            for p in doc["spec"]["ports"]:
                if p.get("targetPort") not in ports and p.get("targetPort") not in ports.values():
                    bad(f"Service {name} targetPort {p.get('targetPort')} is not a container port")
        if kind == "PodDisruptionBudget" and not selects(doc["spec"]["selector"]["matchLabels"]):
            bad(f"PodDisruptionBudget {name} selects no rwsplit pod")
    if not any(k == "PodDisruptionBudget" for k, _ in docs):
        bad("no PodDisruptionBudget")
    if not any(k == "Service" and 6033 in [p["port"] for p in d_["spec"]["ports"]] for (k, _), d_ in docs.items()):
        bad("no Service for the client port 6033")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        g = c.get(probe, {}).get("httpGet", {})
        if g.get("path") != path:
            bad(f"{probe} does not GET {path}")
        if g.get("port") not in ports and g.get("port") not in ports.values():
            bad(f"{probe} port {g.get('port')} is not a container port")
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        bad("not runAsNonRoot")
    if not sc.get("readOnlyRootFilesystem"):
        bad("root filesystem is not read-only")
    if sc.get("allowPrivilegeEscalation") is not False:
        bad("allowPrivilegeEscalation is not false")
    uid = psc.get("runAsUser", sc.get("runAsUser"))
    dockerfile = open(os.path.join(ROOT, "Dockerfile")).read()
    if uid is not None and f"--uid {uid}" not in dockerfile:
        bad(f"runAsUser {uid} is not the image's uid")
    if "limits" not in c.get("resources", {}) or "requests" not in c.get("resources", {}):
        bad("container resources lack requests or limits")
    # The ConfigMap is mounted as a directory (subPath mounts never update) at the path the args name.
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    cm_mounts = [m for m in c.get("volumeMounts", []) if vols.get(m["name"], {}).get("configMap", {}).get("name") == "rwsplit-config"]
    if not cm_mounts:
        bad("the ConfigMap rwsplit-config is not mounted")
    for m in cm_mounts:
        if "subPath" in m:
            bad("the ConfigMap is mounted with subPath: updates would never reach the pod")
        if m["mountPath"].rstrip("/") + "/proxy.yaml" not in " ".join(c.get("args", []) + c.get("command", [])):
            bad(f"args do not point --config at {m['mountPath']}/proxy.yaml")
    cm = docs.get(("ConfigMap", "rwsplit-config"))
    cfg = yaml.safe_load(cm["data"]["proxy.yaml"])
    for key, addr, port_name in (("listen", cfg["listen"], "mysql"), ("metrics.listen", cfg["metrics"]["listen"], "metrics")):
        host, port = addr.rsplit(":", 1)
        if host != "0.0.0.0":
            bad(f"ConfigMap proxy.yaml {key} {addr} must bind 0.0.0.0 to be reachable")
        if ports.get(port_name) != int(port):
            bad(f"ConfigMap proxy.yaml {key} port {port} != containerPort {port_name}={ports.get(port_name)}")
    if any("password" in (x or {}) for x in [*cfg.get("users", []), cfg.get("health"), cfg.get("admin")]):
        bad("the ConfigMap holds a plain password; use password_env and the Secret")
    # Every password_env variable is set from an existing key of the Secret.
    secret = docs.get(("Secret", "rwsplit-passwords"))
    keys = set((secret or {}).get("stringData", {})) | set((secret or {}).get("data", {}))
    envs = {e["name"]: e for e in c.get("env", [])}
    wanted = [u["password_env"] for u in cfg["users"] if "password_env" in u]
    wanted += [cfg[k]["password_env"] for k in ("health", "admin") if "password_env" in cfg.get(k, {})]
    for var in wanted:
        ref = envs.get(var, {}).get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            bad(f"password_env {var} is not set from a Secret in the container's env")
        elif ref["name"] != "rwsplit-passwords" or ref["key"] not in keys:
            bad(f"env {var} refers to {ref}, which secret.yaml does not define")
    grace = parse_secs(cfg.get("shutdown_grace", "10s"))
    pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_s = float(pre[-1]) if pre[:1] == ["sleep"] else 0
    if pod.get("terminationGracePeriodSeconds", 30) <= grace + pre_s:
        bad(f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds', 30)} <= shutdown_grace {grace} + preStop {pre_s}")
    print(f"{len(docs)} objects: {sorted(f'{k}/{n}' for k, n in docs)}")

def cmd_unit(path):
    """Static expectations of the systemd unit (systemd-analyze checks the syntax)."""
    text = open(path).read()
    want = {
        r"^Type=simple$": "Type=simple",
        r"^ExecStartPre=\S*rwsplit .*--check$": "ExecStartPre running --check",
        r"^ExecReload=/bin/kill -HUP \$MAINPID$": "ExecReload=/bin/kill -HUP $MAINPID",
        r"^Restart=on-failure$": "Restart=on-failure",
        r"^User=rwsplit$": "a dedicated User=",
        r"^NoNewPrivileges=yes$": "NoNewPrivileges=yes",
        r"^ProtectSystem=strict$": "ProtectSystem=strict",
        r"^ProtectHome=yes$": "ProtectHome=yes",
        r"^PrivateTmp=yes$": "PrivateTmp=yes",
        r"^CapabilityBoundingSet=$": "an empty CapabilityBoundingSet=",
        r"^LimitNOFILE=\d{5,}$": "LimitNOFILE >= 10000",
        r"^EnvironmentFile=": "EnvironmentFile=",
    }
    for rx, what in want.items():
        if not re.search(rx, text, re.M):
            bad(f"missing {what}")

def cmd_dockerfile(path):
    text = open(path).read()
    joined = re.sub(r"\\\n", " ", text)
    expose = {p for line in re.findall(r"^EXPOSE\s+(.*)$", joined, re.M) for p in line.split()}
    for p in ("6033", "6032", "9104"):
        if p not in expose and p + "/tcp" not in expose:
            bad(f"EXPOSE lacks {p} (has {sorted(expose)})")
    hc = re.findall(r"^HEALTHCHECK\s+(.*)$", joined, re.M)
    if len(hc) != 1 or "/healthz" not in hc[0]:
        bad("no HEALTHCHECK probing /healthz")
    if not re.search(r"^STOPSIGNAL\s+SIGTERM$", joined, re.M):
        bad("no STOPSIGNAL SIGTERM")
    users = re.findall(r"^USER\s+(\S+)", joined, re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        bad("the runtime stage does not switch to a non-root USER")
    froms = re.findall(r"^FROM\s+(\S+)", joined, re.M)
    if not froms or not froms[0].startswith("rust:1-bookworm") or froms[-1] not in ("debian:bookworm-slim",) and "distroless/cc" not in froms[-1]:
        bad(f"stages {froms}: expected rust:1-bookworm builder and a bookworm-slim/distroless runtime")
    if "/etc/rwsplit/proxy.yaml" not in (re.findall(r"^CMD\s+(.*)$", joined, re.M) or [""])[-1]:
        bad("CMD does not use /etc/rwsplit/proxy.yaml")
    # The dependency layer copies every workspace member's manifest (a new crate must be added there).
    root = open(os.path.join(ROOT, "Cargo.toml")).read()
    members = re.findall(r'"([^"]+)"', re.search(r"members\s*=\s*\[([^\]]*)\]", root).group(1))
    for m in members:
        if not re.search(rf"^COPY\s+{re.escape(m)}/Cargo.toml\s", joined, re.M):
            bad(f"workspace member {m}: its Cargo.toml is not copied into the dependency layer")
        if not re.search(rf"{re.escape(m)}/src/lib\.rs", joined):
            bad(f"workspace member {m}: no stub src/lib.rs in the dependency layer")
    for src in re.findall(r"^COPY\s+(?!--from)(.*)\s+\S+$", joined, re.M):
        for s in src.split():
            if not os.path.exists(os.path.join(ROOT, s)):
                bad(f"COPY source {s} does not exist")
    ignore = [l.strip().rstrip("/") for l in open(os.path.join(ROOT, ".dockerignore")) if l.strip() and not l.startswith("#")]
    for want in ("target", ".sandbox", ".git"):
        if want not in ignore and "/" + want not in ignore:
            bad(f".dockerignore does not exclude {want}/")
    for src in re.findall(r"^COPY\s+(?!--from)(.*)\s+\S+$", joined, re.M):
        for s in src.split():
            if s.split("/")[0] in ignore:
                bad(f".dockerignore excludes {s}, which the Dockerfile copies")

def cmd_emulate_builder(dockerfile, workdir, target_cache):
    """Runs the Dockerfile's first (builder) stage without a container engine: COPY from the repository (mtimes
    kept, as Docker does), ENV, WORKDIR, and each RUN with /bin/sh -c. The stage's target/ is a symlink to
    TARGET_CACHE so later runs reuse compiled dependencies."""
    import shutil, subprocess
    lines = [l for l in open(dockerfile).read().split("\n") if not l.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    env, cwd, stage = dict(os.environ), workdir, 0
    for line in text.split("\n"):
        m = re.match(r"^(\w+)\s+(.*)$", line.strip())
        if not m:
            continue
        op, arg = m.group(1).upper(), m.group(2)
        if op == "FROM":
            stage += 1
            if stage > 1:
                break
            continue
        if op == "WORKDIR":
            cwd = os.path.join(workdir, arg.lstrip("/"))
            os.makedirs(cwd, exist_ok=True)
            link = os.path.join(cwd, "target")
            os.makedirs(target_cache, exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(target_cache, link)
        elif op == "ENV":
            for k, v in re.findall(r"(\w+)=(\S+)", arg) or [arg.split(None, 1)]:
                env[k] = v
        elif op == "COPY":
            parts = [a for a in arg.split() if not a.startswith("--")]
            srcs, dest = parts[:-1], parts[-1]
            dest = os.path.join(cwd, dest)
            for src in srcs:
                full = os.path.join(ROOT, src)
                if os.path.isdir(full):
                    shutil.copytree(full, dest, dirs_exist_ok=True, copy_function=shutil.copy2)
                else:
                    target = os.path.join(dest, os.path.basename(src)) if dest.endswith("/") else dest
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copy2(full, target)
        elif op == "RUN":
            print(f"RUN {arg[:100]}...", flush=True)
            r = subprocess.run(["/bin/sh", "-c", arg], cwd=cwd, env=env)
            if r.returncode != 0:
                bad(f"RUN exited {r.returncode}: {arg[:200]}")
                return
        elif op not in ("ARG", "LABEL", "USER", "EXPOSE"):
            bad(f"the emulation does not know {op}")

if __name__ == "__main__":
    fn = globals()["cmd_" + sys.argv[1].replace("-", "_")]
    fn(*sys.argv[2:])
    if problems:
        print("\n".join(problems))
        sys.exit(1)
PYTHON
py() { python3 "$PY" "$@"; }

# ---- syntax ---------------------------------------------------------------------------------------------------
while IFS= read -r f; do
    check "yaml parses: $f" py yaml "$f"
done < <(find deploy -name '*.yml' -o -name '*.yaml' | sort)
check "json parses: deploy/grafana/rwsplit-dashboard.json" python3 -m json.tool deploy/grafana/rwsplit-dashboard.json
while IFS= read -r f; do
    check "bash -n: $f" bash -n "$f"
done < <(find deploy -name '*.sh' | sort)
if command -v shellcheck >/dev/null; then
    check "shellcheck: deploy/check.sh deploy/compose/02-replication.sh" shellcheck deploy/check.sh deploy/compose/02-replication.sh
else
    skip "shellcheck" "not installed"
fi
if [[ -x deploy/compose/02-replication.sh ]]; then
    pass "deploy/compose/02-replication.sh is executable (the image runs it rather than sourcing it)"
else
    fail "deploy/compose/02-replication.sh is executable" "chmod +x it"
fi

# ---- dashboard and alert rules: only the metric names of rwsplit's contract -----------------------------------
check "dashboard: schemaVersion >= 36, datasource variable, every expr uses only contract metrics/labels, every metric shown" \
    py dashboard deploy/grafana/rwsplit-dashboard.json
check "alert rules: every expr uses only contract metrics/labels (plus up)" py alerts deploy/compose/rwsplit-alerts.yml

if command -v promtool >/dev/null; then
    check "promtool: alert rules parse (PromQL syntax, templates)" promtool check rules deploy/compose/rwsplit-alerts.yml
    if py dashboard-rules deploy/grafana/rwsplit-dashboard.json "$WORK/dashboard-rules.yml" >/dev/null; then
        check "promtool: every dashboard expression is valid PromQL (variables substituted)" \
            promtool check rules "$WORK/dashboard-rules.yml"
    else
        fail "extract the dashboard's expressions"
    fi
    # rule_files name the container path; check the config with the repository's file in its place.
    sed "s#/etc/prometheus/rwsplit-alerts.yml#$ROOT/deploy/compose/rwsplit-alerts.yml#" deploy/compose/prometheus.yml \
        >"$WORK/prometheus.yml"
    check "promtool: deploy/compose/prometheus.yml is a valid Prometheus config" promtool check config "$WORK/prometheus.yml"
else
    skip "promtool checks (PromQL syntax of rules and dashboard, prometheus.yml)" \
        "promtool not installed (apt-get install --no-install-recommends prometheus)"
fi

# ---- compose --------------------------------------------------------------------------------------------------
check "compose: depends_on targets exist with healthchecks, mounts exist, GTID replicas, ports, scrape target" \
    py compose deploy/docker-compose.yml
if pip_get check_jsonschema check-jsonschema; then
    check "compose: validates against the compose-spec schema (check-jsonschema vendor.compose-spec)" \
        python3 -m check_jsonschema --builtin-schema vendor.compose-spec deploy/docker-compose.yml
else
    skip "compose-spec schema" "check-jsonschema unavailable"
fi
if docker compose version >/dev/null 2>&1; then
    check "compose: docker compose config" docker compose -f deploy/docker-compose.yml config --quiet
else
    skip "docker compose config" "no compose plugin for the docker client"
fi

# ---- rwsplit --check on the shipped configurations ------------------------------------------------------------
if [[ -x "$RWSPLIT" ]]; then
    check "rwsplit --check deploy/compose/proxy.yaml" "$RWSPLIT" --config deploy/compose/proxy.yaml --check
    if vars="$(py k8s-extract deploy/kubernetes "$WORK/k8s-proxy.yaml" 2>&1)"; then
        envs=()
        for v in $vars; do envs+=("$v=dummy-$v"); done
        check "rwsplit --check on the ConfigMap's proxy.yaml (with ${vars// /, } set)" \
            env "${envs[@]}" "$RWSPLIT" --config "$WORK/k8s-proxy.yaml" --check
        # The same file without the variables must be rejected with exit 2: the check above is not vacuous.
        set +e
        out="$(env -u RWSPLIT_APP_PASSWORD "$RWSPLIT" --config "$WORK/k8s-proxy.yaml" --check 2>&1)"
        rc=$?
        set -e
        if [[ $rc == 2 && "$out" == *password_env* ]]; then
            pass "rwsplit --check rejects the ConfigMap's proxy.yaml when a password_env variable is unset (exit 2)"
        else
            fail "rwsplit --check rejects an unset password_env variable" "exit $rc: $out"
        fi
    else
        fail "extract proxy.yaml from the ConfigMap" "$vars"
    fi
else
    fail "rwsplit --check on the shipped configurations" "no binary at $RWSPLIT (cargo build --release --bin rwsplit failed)"
fi

# ---- Kubernetes -----------------------------------------------------------------------------------------------
check "kubernetes: selectors, probes (/healthz, /readyz), non-root + read-only rootfs, ConfigMap as directory, Secret keys for every password_env, ports, grace" \
    py k8s deploy/kubernetes
if pip_get kubernetes_validate kubernetes-validate; then
    mapfile -t manifests < <(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
    for version in 1.27.0 1.33.0; do
        check "kubernetes: manifests validate (strict) against the Kubernetes $version schemas" \
            python3 -m kubernetes_validate --strict --quiet -k "$version" "${manifests[@]}"
    done
else
    skip "kubernetes schemas" "kubernetes-validate unavailable"
fi

# ---- systemd --------------------------------------------------------------------------------------------------
UNIT=deploy/systemd/rwsplit.service
check "systemd: unit has Type=simple, --check pre-start, HUP reload, hardening, LimitNOFILE, EnvironmentFile" py unit "$UNIT"
if command -v systemd-analyze >/dev/null; then
    # verify resolves ExecStart= binaries: point the unit at the binary built here.
    mkdir -p "$WORK/unit"
    bin="$RWSPLIT"
    [[ -x "$bin" ]] || bin=/bin/true
    sed "s#/usr/local/bin/rwsplit#$bin#g" "$UNIT" >"$WORK/unit/rwsplit.service"
    check "systemd-analyze verify $UNIT" systemd-analyze verify "$WORK/unit/rwsplit.service"
    if out="$(systemd-analyze security --offline=yes --threshold=20 "$WORK/unit/rwsplit.service" 2>&1)"; then
        level="$(sed -n 's/.*Overall exposure level for rwsplit.service: \([0-9.]*\).*/\1/p' <<<"$out")"
        if [[ -n "$level" ]] && awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }'; then
            pass "systemd-analyze security: exposure $level (<= 2.0)"
        else
            fail "systemd-analyze security: exposure <= 2.0" "$(tail -3 <<<"$out")"
        fi
    else
        skip "systemd-analyze security" "this systemd has no --offline mode"
    fi
else
    skip "systemd-analyze verify" "systemd-analyze not installed (apt-get install systemd)"
fi

# ---- Dockerfile (hadolint is not available: structural checks only) --------------------------------------------
check "Dockerfile: EXPOSE 6033 6032 9104, HEALTHCHECK /healthz, STOPSIGNAL SIGTERM, non-root USER, stages, CMD config, workspace manifests copied, .dockerignore" \
    py dockerfile Dockerfile
if [[ "${CHECK_SKIP_IMAGE_BUILD:-0}" == 1 ]]; then
    skip "Dockerfile builder stage" "CHECK_SKIP_IMAGE_BUILD=1"
else
    # The first run compiles every dependency (a few minutes); target/docker-builder caches them.
    check "Dockerfile builder stage, emulated without Docker (COPY/ENV/RUN in a scratch dir): stub layer, real build, rwsplit --version" \
        py emulate-builder Dockerfile "$WORK/image" "$ROOT/target/docker-builder"
fi
skip "hadolint" "not available here"
skip "docker build / compose up / kubectl apply" "no container engine or cluster on this machine"

echo
echo "${PASSED} passed, ${FAILED} failed, ${SKIPPED} skipped"
[[ $FAILED == 0 ]]
