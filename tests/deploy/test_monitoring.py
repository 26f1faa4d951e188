"""Checks deploy/monitoring offline: the alerts pass promtool (and its unit tests), the
PrometheusRule holds the same groups as the plain rules file, the component renders with an
overlay, and every metric and label a panel or an alert names is in the services' /metrics.

kubernetes-validate has no schema for prometheus-operator's kinds (PrometheusRule, PodMonitor),
so those are checked here instead: the PrometheusRule's spec must equal the plain file, which
`promtool check rules` parses strictly (an unknown field fails), and the PodMonitor must select
the services' pods and their `metrics` port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools.natsserver import NatsServer
from tests.deploy.test_manifests import (
    DEPLOY,
    KUBERNETES_VERSIONS,
    SERVICES,
    Manifest,
    _kubectl,
    _kubernetes_validate,
    named,
    pod_labels,
    pod_spec,
    selects,
)
from tests.metrics_scrape import scrape

MONITORING = DEPLOY / "monitoring"
RULES = MONITORING / "promesa-alerts.rules.yaml"
RULE_TESTS = MONITORING / "promesa-alerts.test.yaml"
PROMETHEUS_RULE = MONITORING / "prometheus-rule.yaml"
DASHBOARD = MONITORING / "promesa-dashboard.json"
README = DEPLOY / "README.md"
OPERATOR_KINDS = ("PrometheusRule", "PodMonitor")

# What the operators asked for (issue 16), one alert each.
ALERTS = {
    "PromesaOutboxBacklogGrowing",
    "PromesaOutboxStale",
    "PromesaDeadLetters",
    "PromesaConsumerLagGrowing",
    "PromesaReminderLagHigh",
    "PromesaNotifierFailing",
    "PromesaOverduePromisesHigh",
}
# Labels the scrape adds (Kubernetes service discovery, the PodMonitor) and the bucket bound.
SCRAPE_LABELS = {"namespace", "pod", "le"}


# ---------------------------------------------------------------------------------------------
# Reading PromQL: which metrics and labels an expression names


_PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_IDENTIFIER = re.compile(r"(?<![\w$.])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()")


def promql_names(expr: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """The metrics an expression reads, the label names each selector matches on, and the
    labels it groups by. Functions (an identifier followed by `(`), keywords, numbers,
    durations and Grafana's `$variables` are not metrics."""
    text = _STRING.sub('""', expr)
    matched: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(text):
        matched.setdefault(name, set()).update(_MATCHER.findall(matchers))
    grouped = {
        label.strip() for labels in _GROUPING.findall(text) for label in labels.split(",")
    } - {""}
    text = _SELECTOR.sub(r"\1", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    metrics = {name for name in _IDENTIFIER.findall(text) if name not in _PROMQL_KEYWORDS}
    metrics |= set(matched)
    return metrics, matched, grouped


def test_promql_names_finds_metrics_but_not_functions_keywords_or_variables() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (method, le) "
        '(rate(promesa_grpc_server_handling_seconds_bucket{service="a", namespace=~"$namespace"}'
        "[$__rate_interval]))) > 1 and on (service) promesa_outbox_backlog offset 15m"
        " or sum(rate(promesa_dead_letters_total[5m])) by (consumer) unless vector(1)"
    )

    metrics, matched, grouped = promql_names(expr)

    assert metrics == {
        "promesa_grpc_server_handling_seconds_bucket",
        "promesa_outbox_backlog",
        "promesa_dead_letters_total",
    }
    assert matched == {"promesa_grpc_server_handling_seconds_bucket": {"service", "namespace"}}
    assert grouped == {"method", "le", "service", "consumer"}


# ---------------------------------------------------------------------------------------------
# The alert rules


def _rules() -> list[Manifest]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: apt-get install prometheus (Debian) in CI")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def test_the_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_each_alert_fires_on_its_trouble_and_stays_quiet_otherwise() -> None:
    """promtool's unit tests of the rules: a series per trouble, and a healthy one beside it."""
    result = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=MONITORING,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert tested == ALERTS


def test_the_alerts_are_the_ones_asked_for_each_with_summary_description_and_runbook() -> None:
    rules = _rules()
    assert {rule["alert"] for rule in rules} == ALERTS
    sections = _readme_sections()
    for rule in rules:
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip()
        assert rule["labels"]["severity"] in ("warning", "critical")
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "deploy/README.md"
        assert anchor in sections, f"{rule['alert']}: no section #{anchor} in deploy/README.md"
        section = sections[anchor]
        assert "What it means" in section and "What to do" in section, rule["alert"]
        metrics, _, _ = promql_names(rule["expr"])
        for metric in metrics:
            base = re.sub(r"_bucket$", "", metric)
            assert base in section, f"{rule['alert']}: its runbook does not name {base}"


def _readme_sections() -> dict[str, str]:
    """deploy/README.md's sections by their GitHub anchor."""
    sections: dict[str, str] = {}
    anchor = ""
    in_code = False
    for line in README.read_text().splitlines():
        in_code ^= line.startswith("```")
        heading = None if in_code else re.fullmatch(r"#+\s+(.*)", line)
        if heading:
            anchor = re.sub(r"[^\w\- ]", "", heading[1].lower()).replace(" ", "-")
            sections[anchor] = ""
        elif anchor:
            sections[anchor] += line + "\n"
    return sections


def test_the_prometheus_rule_holds_the_plain_files_groups() -> None:
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())

    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


# ---------------------------------------------------------------------------------------------
# The component, rendered with the prod overlay


@pytest.fixture(scope="module")
def with_monitoring(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """prod plus the monitoring component, as an operator's overlay would include it."""
    overlay = tmp_path_factory.mktemp("overlay")
    deploy = os.path.relpath(DEPLOY, overlay)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "promesa",
                "resources": [f"{deploy}/overlays/prod"],
                "components": [f"{deploy}/monitoring"],
            }
        )
    )
    result = subprocess.run(
        [_kubectl(), "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_the_component_also_builds_on_its_own() -> None:
    """`kubectl apply -n <namespace> -k deploy/monitoring` beside an overlay applied earlier."""
    result = subprocess.run(
        [_kubectl(), "kustomize", str(MONITORING)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted(obj["kind"] for obj in objects) == sorted(["ConfigMap", *OPERATOR_KINDS])


def test_an_overlay_with_monitoring_renders_and_validates(
    with_monitoring: list[Manifest], tmp_path: Path
) -> None:
    operator = [obj for obj in with_monitoring if obj["kind"] in OPERATOR_KINDS]
    assert sorted(obj["kind"] for obj in operator) == sorted(OPERATOR_KINDS)
    assert all(obj["apiVersion"] == "monitoring.coreos.com/v1" for obj in operator)
    assert all(obj["metadata"]["namespace"] == "promesa" for obj in operator)
    # The rest against the Kubernetes schemas, strictly, as test_manifests does.
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(
        yaml.safe_dump_all([obj for obj in with_monitoring if obj["kind"] not in OPERATOR_KINDS])
    )

    oldest, newest = KUBERNETES_VERSIONS[0], KUBERNETES_VERSIONS[-1]

    result = _kubernetes_validate(
        ["--strict", "--quiet", "-k", oldest, "-k", newest, str(manifest)]
    )

    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_dashboard_configmap_is_labelled_for_the_grafana_sidecar(
    with_monitoring: list[Manifest],
) -> None:
    config_map = named(with_monitoring, "ConfigMap", "promesa-dashboard")

    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"][DASHBOARD.name]) == json.loads(DASHBOARD.read_text())


def test_the_pod_monitor_scrapes_each_services_metrics_port(
    with_monitoring: list[Manifest],
) -> None:
    monitor = named(with_monitoring, "PodMonitor", "promesa")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    workloads = [
        obj for obj in with_monitoring if obj["kind"] in ("Deployment", "StatefulSet", "Job")
    ]

    scraped = {
        workload["metadata"]["name"]
        for workload in workloads
        if selects(monitor["spec"]["selector"], pod_labels(workload))
    }

    assert scraped == set(SERVICES)
    for service in SERVICES:
        (container,) = pod_spec(named(with_monitoring, "Deployment", service))["containers"]
        assert "metrics" in {port["name"] for port in container["ports"]}


# ---------------------------------------------------------------------------------------------
# The dashboard


def _dashboard() -> Manifest:
    dashboard: Manifest = json.loads(DASHBOARD.read_text())
    return dashboard


def _queries(dashboard: Manifest) -> list[tuple[str, str]]:
    """(panel title, expression) for every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_the_dashboard_has_a_row_per_service_and_a_promises_row() -> None:
    dashboard = _dashboard()
    panels = dashboard["panels"]

    rows = [panel["title"] for panel in panels if panel["type"] == "row"]
    assert rows == [*SERVICES, "promises"]
    assert dashboard["uid"] and dashboard["title"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    row = ""
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            row = panel["title"]
            continue
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            if row in SERVICES:  # a service's row shows that service only
                assert f'service="{row}"' in target["expr"], (row, panel["title"])
    # Panels follow each other down the page without overlapping.
    cells = set()
    for panel in panels:
        box = panel["gridPos"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))


# ---------------------------------------------------------------------------------------------
# Every metric and label named exists in the services' /metrics after a test run


def _exposed(text: str) -> dict[str, set[str]]:
    """Each sample name in an exposition text with the label names its samples carry."""
    exposed: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            exposed.setdefault(sample.name, set()).update(sample.labels)
    return exposed


def _unknown(expr: str, exposed: dict[str, set[str]]) -> list[str]:
    metrics, matched, grouped = promql_names(expr)
    problems = [f"no metric {name}" for name in sorted(metrics - set(exposed))]
    for name, labels in matched.items():
        problems += [
            f"{name} has no label {label}"
            for label in sorted(labels - SCRAPE_LABELS - exposed.get(name, set()))
        ]
    known = set().union(*(exposed.get(name, set()) for name in metrics))
    problems += [f"no label {label}" for label in sorted(grouped - SCRAPE_LABELS - known)]
    return problems


def _label_values_as_promql(query: str) -> str:
    """Grafana's `label_values(metric, label)` as the PromQL that needs the same metric and
    label."""
    match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
    assert match, f"unexpected variable query {query!r}"
    return f"count by ({match[2]}) ({match[1]})"


async def test_panels_and_alerts_name_only_metrics_and_labels_the_services_expose(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    text = await scrape(nats_server, tmp_path)
    exposed = _exposed(text)
    dashboard = _dashboard()
    queries = [
        *((f"alert {rule['alert']}", rule["expr"]) for rule in _rules()),
        *((f"panel {title}", expr) for title, expr in _queries(dashboard)),
        *(
            (f"variable {variable['name']}", _label_values_as_promql(variable["query"]["query"]))
            for variable in dashboard["templating"]["list"]
            if variable["type"] == "query"
        ),
    ]

    problems = {where: _unknown(expr, exposed) for where, expr in queries}

    assert not {where: found for where, found in problems.items() if found}
    # The service rows select by the values the services give their `service` label.
    services = {
        sample.labels["service"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "service" in sample.labels
    }
    assert set(SERVICES) <= services
    named_metrics = set().union(*(promql_names(expr)[0] for _, expr in queries))
    assert {"promesa_outbox_oldest_age_seconds", "promesa_followup_promises_overdue"} <= (
        named_metrics
    )
