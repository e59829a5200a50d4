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
    write_report(path, **inputs)
    return path


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
