"""Shared test helpers: repo paths, the real cohort's location, and a small simulated cohort."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
