"""Shared test helpers: repo paths, the real cohort's location, and a small simulated cohort."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REAL_COHORT = REPO.parent / "shared" / "data" / "real" / "lemay2019_wholeblood_highfat_meal"
GENE_SETS = REPO / "resources" / "gene_sets"

requires_real_cohort = pytest.mark.skipif(
    not (REAL_COHORT / "fixed_combinedCounts.txt.gz").exists(),
    reason=f"real whole-blood cohort not found at {REAL_COHORT} (../shared is absent on this machine)",
)


def run_snakemake(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """ctra's Snakefile run in ``workdir`` on ``workdir/config.yaml``, with ``args`` (targets, options)."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout)


def run_example(workdir: Path, config: dict, *targets: str) -> subprocess.CompletedProcess:
    """The workflow on ``config`` (written to ``workdir/config.yaml``) with 2 cores."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_snakemake(workdir, "--cores", "2", *targets)


@pytest.fixture(scope="session")
def example_run(tmp_path_factory) -> Path:
    """``results/example`` of one workflow run on the bundled example, shared by the tests that read it
    (``snakemake --report`` and the end-to-end checks): the default suite runs the example once."""
    workdir = tmp_path_factory.mktemp("example")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    study = config["studies"]["example"]
    study["counts"] = str(REPO / study["counts"])
    study["samples"] = str(REPO / study["samples"])
    result = run_example(workdir, config)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "results" / "example"
