"""The monitoring files in docker/ (Grafana dashboard, Prometheus config and alerting rules)
and what a test needs to check them against real nodes: the PromQL expressions they hold,
the metric names and label values those expressions select, the Prometheus text format a
node's /metrics answers, and Debian's Prometheus run on loopback.

The PromQL reading here is deliberately small: it finds metric names (identifiers that are
not functions, aggregations, keywords or label names) and the label matchers of selectors.
Whether an expression is valid PromQL is left to Prometheus itself (promtool, and the
server's query API), not to this module.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from nodes import HOST, stop_process

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "stomp-cluster.json"
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
ALERTS = DOCKER / "prometheus" / "alerts.yml"
GRAFANA_PROVISIONING = DOCKER / "grafana" / "provisioning"

# Series Prometheus makes itself for every target; a node never exposes them.
SYNTHESIZED = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
               "scrape_samples_post_metric_relabeling", "scrape_series_added"}
# Labels Prometheus attaches to every scraped series (the target's), not the node.
TARGET_LABELS = {"job", "instance"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "atan2", "inf", "nan"} | AGGREGATIONS

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
_SELECTOR = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*$", re.S)


# ---------------------------------------------------------------------------------------
# The files
# ---------------------------------------------------------------------------------------

def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def prometheus_config() -> dict:
    return yaml.safe_load(PROMETHEUS_CONFIG.read_text())


def alert_rules() -> list:
    """Every rule of alerts.yml (alerting and recording), in file order."""
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_panels(doc: dict | None = None) -> list:
    """Every panel, those inside collapsed rows included (rows themselves left out)."""
    out = []
    for panel in (doc or dashboard())["panels"]:
        if panel.get("type") == "row":
            out += panel.get("panels") or []
        else:
            out.append(panel)
    return out


def dashboard_expressions(doc: dict | None = None) -> list:
    """[(where, PromQL with Grafana's variables still in it)]: panel targets, then the
    metric selectors of label_values() variable queries."""
    doc = doc or dashboard()
    found = [(f"panel {p['title']!r} target {t.get('refId')}", t["expr"])
             for p in dashboard_panels(doc) for t in p.get("targets") or []]
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = _LABEL_VALUES.match(query)
        assert m, f"variable {var['name']}: only label_values(SELECTOR, LABEL) queries are checked, got {query!r}"
        found.append((f"variable {var['name']}", m.group(1)))
    return found


def rule_expressions() -> list:
    return [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in alert_rules()]


def job_name() -> str:
    jobs = [c["job_name"] for c in prometheus_config()["scrape_configs"]]
    assert len(jobs) == 1, f"prometheus.yml should scrape one job (the nodes), has {jobs}"
    return jobs[0]


def with_grafana_variables(expr: str, rate_interval: str = "1m") -> str:
    """The expression as Grafana sends it with every node selected."""
    return (expr.replace("$__rate_interval", rate_interval)
            .replace('instance=~"$instance"', 'instance=~".*"')
            .replace("$job", job_name()))


# ---------------------------------------------------------------------------------------
# Reading PromQL
# ---------------------------------------------------------------------------------------

def metric_names(expr: str) -> set:
    """Metric names an expression reads."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)      # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)     # range and subquery windows
    text = _LABEL_LIST.sub(r"\1 ", text)         # by (...), on (...), group_left (...)
    text = re.sub(r"\boffset\s+-?[\w$]+", " ", text)
    names = set()
    for m in _IDENTIFIER.finditer(text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def selectors(expr: str) -> list:
    """[(metric, [(label, op, value)])] for every `metric{...}` selector."""
    return [(m.group(1), _MATCHER.findall(m.group(2))) for m in _SELECTOR.finditer(expr)]


# ---------------------------------------------------------------------------------------
# A node's /metrics
# ---------------------------------------------------------------------------------------

def scrape(admin_url: str, token: str | None) -> str:
    request = urllib.request.Request(admin_url + "/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+\S+")
_LABEL = re.compile(r'([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> tuple:
    """(series, types): series is [(name, {label: value})] of every sample line, types
    {family: type} from the `# TYPE` lines."""
    series, types = [], {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(None, 3)
            types[family] = kind.strip()
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            assert m, f"not a Prometheus sample line: {line!r}"
            series.append((m.group(1), dict(_LABEL.findall(m.group(2) or ""))))
    return series, types


def sample_value(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name` whose labels include `labels` (0 when there is none)."""
    for line in text.splitlines():
        m = _SAMPLE.match(line) if not line.startswith("#") else None
        if m and m.group(1) == name and labels.items() <= dict(_LABEL.findall(m.group(2) or "")).items():
            return float(line.split()[-1])
    return 0.0


def exposed_names(series: list, types: dict) -> set:
    """Every name a query can select: sample names, and for histograms and summaries the
    family's _bucket/_sum/_count series (a family may be declared before any sample)."""
    names = {name for name, _ in series}
    for family, kind in types.items():
        if kind == "histogram":
            names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
        elif kind == "summary":
            names |= {family, f"{family}_sum", f"{family}_count"}
        else:
            names.add(family)
    return names


def unmatched_label_values(expr: str, series: list) -> list:
    """The `label="value"` (and `label=~"a|b"` of plain alternatives) matchers of an
    expression that no scraped series of that metric carries."""
    problems = []
    for metric, matchers in selectors(expr):
        if metric in SYNTHESIZED:
            continue
        for label, op, value in matchers:
            if label in TARGET_LABELS or "$" in value:
                continue
            if op == "=":
                wanted = [value]
            elif op == "=~" and re.fullmatch(r"[\w.:-]+(\|[\w.:-]+)*", value):
                wanted = value.split("|")
            else:
                continue
            have = {labels.get(label) for name, labels in series if name == metric}
            problems += [f"{metric}{{{label}={v!r}}} (the node has {sorted(x for x in have if x is not None)})"
                         for v in wanted if v not in have]
    return problems


# ---------------------------------------------------------------------------------------
# Debian's Prometheus on loopback
# ---------------------------------------------------------------------------------------

def require_binary(name: str) -> str:
    """Debian's prometheus package (`apt-get install prometheus`; `scripts/install-deps.sh
    --test` installs it) holds both the server and promtool."""
    path = shutil.which(name)
    if path is None:
        import pytest
        pytest.fail(f"{name} is not installed: `apt-get install -y prometheus` "
                    f"(scripts/install-deps.sh --test does it)", pytrace=False)
    return path


class Prometheus:
    """A Prometheus server running docker/prometheus/prometheus.yml's job and alerts.yml
    against nodes on 127.0.0.1, scraping every second."""

    def __init__(self, root: Path, targets: list, token_file: Path, port: int):
        self.root, self.port = root, port
        self.url = f"http://{HOST}:{port}"
        config = prometheus_config()
        job = config["scrape_configs"][0]
        # Every node here is 127.0.0.1: the file's relabeling (instance = host without the
        # port) would merge them, so instance stays host:port.
        job.pop("relabel_configs", None)
        job["static_configs"] = [{"targets": targets}]
        job["authorization"]["credentials_file"] = str(token_file)
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(ALERTS)]
        self.config_path = root / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = root / "prometheus.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [require_binary("prometheus"), f"--config.file={self.config_path}",
             f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address={HOST}:{port}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, cwd=root)

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def api(self, path: str, **params) -> dict:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:  # 400/422 carry the error as JSON
            return json.loads(e.read())

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr)

    def targets(self) -> list:
        """The scrape targets; none while the server starts (it answers 503 in plain text
        until it is ready)."""
        try:
            return self.api("targets")["data"]["activeTargets"]
        except (OSError, ValueError, KeyError):
            return []

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
