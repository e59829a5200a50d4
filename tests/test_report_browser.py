"""The report in a real browser (headless Chromium, network blocked): plots render, nothing errors,
hostile names do not execute. Skipped with a reason when Debian's chromium is not installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from ctra.report import write_report
from test_report import make_inputs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)"),
]
ARTIFACTS = REPO / "test-artifacts"
# a payload that would mark the page if any injected markup or script ever ran
PWN_SCRIPT = "</script><script>document.title='PWNED'</script>"
PWN_IMG = '"><img src=x onerror="document.title=\'PWNED\'">'


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=15000",
    ]
    return subprocess.run([CHROMIUM, *flags, *extra, url], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("browser") / "report.html"
    inputs = make_inputs(
        arms=("control", PWN_SCRIPT, PWN_IMG),
        times=("pre", PWN_IMG),
        participant_prefix=PWN_SCRIPT,
        study="Trial " + PWN_IMG,
    )
    write_report(path, **inputs, power=_hostile_power())
    return path


def _hostile_power():
    """power.tsv rows for a primary row whose arm is a hostile name (the report's Power section and its curves)."""
    from ctra.config import PowerSettings
    from ctra.power import power_table

    effect = {
        "has_control": True,
        "times": ["pre", PWN_IMG],
        "patterns": [[0, 1]],
        "pattern_shares": [1.0],
        "gamma": 2.0,
        "sigma2": 0.07,
        "score_sd": 0.6,
        "q_within": 0,
        "markers_used": [],
        "marker_rule": "auto",
        "p_between": 1,
        "primary_rows": [
            {
                "contrast": "arm_x_time",
                "arm": PWN_SCRIPT,
                "time": PWN_IMG,
                "estimate": -0.5,
                "ci_low": -0.8,
                "ci_high": -0.2,
            }
        ],
    }
    settings = PowerSettings(effects=(0.3,), alpha=0.05, targets=(0.9,), attrition=0.1, max_per_arm=300, arms=2)
    return power_table(effect, settings)


def test_synthesis_report_renders_and_hostile_study_names_do_not_run(tmp_path):
    from ctra.planning_report import write_synthesis_report
    from ctra.synthesis import StudyEffect, meta_table

    effects = [
        StudyEffect(name, "ctra", PWN_IMG, "post", "counts", 40, y, 0.15, y - 0.3, y + 0.3)
        for name, y in ((PWN_SCRIPT, -0.6), (PWN_IMG, -0.2), ("plain", -0.4))
    ]
    path = tmp_path / "synthesis.html"
    write_synthesis_report(path, table=meta_table(effects), versions={"ctra": "0"}, generated="now")
    result = chromium(path.as_uri(), tmp_path / "profile", "--dump-dom")
    dom = result.stdout
    start = dom.index('id="fig-synthesis-forest"')
    assert 'class="main-svg"' in dom[start : start + 20000]
    assert [line for line in result.stderr.splitlines() if "CONSOLE" in line] == []
    assert "PWNED" not in re.search(r"<title>(.*?)</title>", dom, flags=re.S).group(1)


def test_every_plot_renders_without_console_errors(hostile_report, tmp_path):
    result = chromium(hostile_report.as_uri(), tmp_path / "profile", "--dump-dom")
    dom = result.stdout
    figures = re.findall(r'<div[^>]+id="(fig-[^"]+)"', dom)
    assert len(figures) >= 8
    for fig_id in figures:
        start = dom.index(f'id="{fig_id}"')
        assert 'class="main-svg"' in dom[start : start + 20000], f"{fig_id} did not render"
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    title = re.search(r"<title>(.*?)</title>", dom, flags=re.S).group(1)
    assert "PWNED" not in title.replace("document.title='PWNED'", ""), title  # no injected code ran


def test_screenshot_saved_as_artifact(hostile_report, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    chromium(hostile_report.as_uri(), tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,3000")
    assert shot.stat().st_size > 50_000
