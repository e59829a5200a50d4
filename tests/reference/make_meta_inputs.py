"""Step 1 of the meta-analysis reference fixtures: the bundled example and copies with other seeds, run through
ctra's workflow with a synthesis, exported as metafor's input (small files only).

Re-run from anywhere (the repository root is found from this file's location):

    python tests/reference/make_meta_inputs.py && Rscript tests/reference/make_meta_fixtures.R

It writes the example cohort for each seed in ``SEEDS`` (``ctra example --seed``; the first is the bundled
example's seed) under a temporary directory, runs ``snakemake results/synthesis/report.html`` there with one
study per seed and ``synthesis: {studies: [{study: ..., arm: kind_others}, ...]}``, and writes

* ``fixtures/meta/example_seeds_input.tsv``: study, yi, vi (= ctra's pooled estimate and se^2 per study), the
  input of ``make_meta_fixtures.R``;
* ``fixtures/meta/example_seeds_ctra_meta.tsv``: ctra's own meta.tsv of that run, for
  ``tests/test_synthesis.py``'s slow check that the workflow reproduces it.

The other cases' inputs (``published_style``, ``homogeneous``) are committed by hand; ``bcg`` is written by the R
script from metafor's dat.bcg.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = HERE / "fixtures" / "meta"
SEEDS = (20261122, 1, 2)


def synthesis_config(root: Path) -> dict:
    """The config of one study per seed (the bundled example's settings) and their synthesis."""
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["studies"]["example"]
    studies = {}
    for seed in SEEDS:
        name = f"example_seed{seed}"
        data = root / name
        subprocess.run(
            [sys.executable, "-m", "ctra.cli", "example", "--out", str(data), "--seed", str(seed)], check=True
        )
        studies[name] = {**base, "counts": str(data / "counts.tsv.gz"), "samples": str(data / "samples.tsv")}
    return {
        "studies": studies,
        "synthesis": {"studies": [{"study": name, "arm": "kind_others"} for name in studies]},
    }


def run(root: Path) -> pd.DataFrame:
    config = synthesis_config(root)
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(root),
        "--configfile",
        str(root / "config.yaml"),
        "--cores",
        "2",
        "results/synthesis/report.html",
    ]
    subprocess.run(command, check=True, cwd=root)
    return pd.read_csv(root / "results" / "synthesis" / "meta.tsv", sep="\t", keep_default_na=False, na_values=[""])


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="ctra_meta_"))
    try:
        meta = run(root)
        shutil.copyfile(root / "results" / "synthesis" / "meta.tsv", OUT / "example_seeds_ctra_meta.tsv")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    studies = meta[meta["analysis"] == "study"]
    table = pd.DataFrame({"study": studies["study"], "yi": studies["estimate"], "vi": studies["se"] ** 2})
    table.to_csv(OUT / "example_seeds_input.tsv", sep="\t", index=False, float_format="%.15g", lineterminator="\n")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
