"""deploy/: the alert rules pass promtool's own tests, name only metrics the daemon exposes, and each has a
runbook section; the dashboard does the same; the constraints pin the whole runtime set."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from processor.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


def _exposed() -> set[str]:
    metrics = Metrics(known=["generate-website"])
    metrics.delivery_latency.labels("generate-website").observe(0.1)
    metrics.deliveries.labels("generate-website", "accepted").inc()
    metrics.failures.labels("generate-website").inc()
    page = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split()[0] for line in page.splitlines() if line and not line.startswith("#")}


def _names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:genretry|process)_[a-z_]+)", expr))


def test_alert_rules_name_exposed_metrics_and_have_a_runbook_section() -> None:
    rules = [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    runbook = (ROOT / "docs" / "RUNBOOK.md").read_text()
    exposed = _exposed()
    assert {r["alert"] for r in rules} >= {"GenretryDaemonDown", "GenretryStuckRows", "GenretryGeneratorPaused",
                                           "GenretryRecorderStalled"}
    for rule in rules:
        assert _names(rule["expr"]) <= exposed, (rule["alert"], _names(rule["expr"]) - exposed)
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["runbook"] == f"docs/RUNBOOK.md#{rule['alert'].lower()}"
        assert f"\n## {rule['alert']}\n" in runbook, rule["alert"]


def test_promtool_checks_and_tests_the_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: .ci/run installs Debian's prometheus package"
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        done = subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_queries_exposed_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "generation-processor.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*(_names(e) for e in exprs))
    assert used <= _exposed(), used - _exposed()
    assert {"genretry_due_rows", "genretry_oldest_overdue_seconds", "genretry_paused_generators"} <= used


def test_constraints_pin_every_runtime_dependency_and_the_daemon_needs_no_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {line.split("==")[0].lower().replace("_", "-") for line in
            (ROOT / "deploy" / "constraints.txt").read_text().splitlines() if "==" in line}
    required = {re.split(r"[<>=\[;]", d)[0].strip().lower() for d in project["dependencies"]}
    assert required <= pins, required - pins
    assert not required & {"uvicorn", "click", "pytest", "pgserver", "mypy", "ruff"}
    assert {"uvicorn"} <= {re.split(r"[<>=\[;]", d)[0] for d in project["optional-dependencies"]["generator"]}
    assert (ROOT / "LICENSE").is_file() and (ROOT / "processor" / "py.typed").is_file()
    # the daemon's modules import nothing from the extras (click is left out: httpx imports it when present)
    code = ("import sys, processor.cli, processor.daemon, processor.health, processor.admin, processor.check; "
            "sys.exit(bool({'uvicorn', 'pgserver'} & set(sys.modules)))")
    assert subprocess.run([__import__("sys").executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0
