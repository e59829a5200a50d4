"""The Slurm profile on a real one-node Slurm (tests/cluster/run_slurm_test.sh); root on Debian only.

The script installs slurm-wlm and munge with apt (about 20 s), starts munged/slurmctld/slurmd under a temp dir,
runs the example plus two copies as other studies through workflow/profiles/slurm, and compares the tables
with a local run byte for byte. Runs in the default `python -m pytest` when possible (CI is root on Debian).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "cluster" / "run_slurm_test.sh"
SKIP = 77  # the script's exit status for "cannot run here"
TIMEOUT = 900  # seconds; the script bounds each of its own steps well below this


def _why_not_here() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root: installs slurm-wlm and munge with apt and starts slurmctld/slurmd (CI runs as root)"
    if not Path("/etc/debian_version").exists() or shutil.which("apt-get") is None:
        return "needs Debian with apt-get to install slurm-wlm and munge"
    for tool in ("bash", "timeout", "setpriv", "flock"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


@pytest.mark.cluster
def test_slurm_profile_fans_out_three_studies_and_matches_local_run():
    reason = _why_not_here()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["timeout", "-s", "KILL", str(TIMEOUT), "bash", str(SCRIPT)], env=env, capture_output=True, text=True
    )
    output = proc.stdout + proc.stderr
    if proc.returncode == SKIP:
        pytest.skip(next((line[6:] for line in output.splitlines() if line.startswith("SKIP: ")), output[-500:]))
    assert proc.returncode == 0, f"{SCRIPT.name} exited with {proc.returncode}:\n{output[-6000:]}"
    print(output)
