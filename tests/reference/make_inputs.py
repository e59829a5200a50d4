"""Step 1 of the R reference fixtures: run ctra's workflow and export what R needs (small files only).

Re-run from anywhere (the repository root is found from this file's location):

    python tests/reference/make_inputs.py && Rscript tests/reference/make_fixtures.R
    python tests/reference/make_inputs.py --cases crossover && Rscript tests/reference/make_fixtures.R crossover

What it does:

1. writes ``tests/reference/config.yaml`` with the studies ``reference_example`` (the bundled example,
   ``config/config.yaml``'s study, exported as case ``example``), ``real`` (the LeMay 2019 whole-blood
   cohort, read in place from ``../shared``) and ``unbalanced`` (the bundled example with the ``post``
   draw of every 5th complete participant listed in ``exclude_samples``), all three with
   ``normalization: vst_subset`` (R's ``vst()``, the method the model fixtures were first made with;
   ``tests/test_reference_agreement.py`` checks the pipeline against them with that method);
2. runs ``snakemake --cores 2 --configfile tests/reference/config.yaml`` from the repository root for
   ``results/<study>/``, up to the mixed model (target ``model.json``; ``--forcerun validate`` so the
   results come from the current code; ``--skip-workflow`` uses the results already there);
3. exports per case into ``tests/reference/fixtures/<case>/``:

   * ``design.json``: levels (reference first), covariates, marker genes used, whether there is a
     period, ctra's formula and coefficient names, the samples excluded;
   * ``lmm_input.tsv``: one row per sample as ctra modelled it: design columns, covariates, ctra's four
     scores (from ``scores.tsv``) and the VST of the marker genes ctra adjusted for (layer ``vst`` of
     ``normalized.h5ad``), so R fits the mixed model on exactly ctra's numbers;
   * ``ctra_contrasts.tsv``: ctra's ``lmm`` rows of ``contrasts.tsv`` (the keys R computes; ctra's
     values are kept for the record only, the tests recompute them);
   * ``gee_input.tsv.gz``: long format (sample, participant, gene, z) over the used genes of the set,
     ``z`` = direction-signed z-score of ctra's VST over all samples (ddof = 1), sorted by participant,
     sample, gene; covariates and markers are joined from ``lmm_input.tsv`` by sample.

The case ``crossover`` is simulated, not run through the workflow: ``benchmarks/calibration.py``'s
``simulate(DESIGNS["crossover_24"], seed=CROSSOVER_SEED)`` (24 participants, AB/BA sequences 16/8,
pre/post in each of two periods, 2 participants without their period-2 post draw, period effects on
level and change, covariate ``age``, the 8 marker genes) gives the log2-scale (VST) cohort; ctra's
``scoring.score_study``, ``stats.study_design`` and ``stats.fit_scores`` give the scores, the design
and the contrast keys, exported in the same layout as the other cases (no counts, so no DESeq2
fixtures). The committed files are the reference; if ``simulate`` changes, re-running gives a
different (equally valid) cohort.

No count data of the real cohort is copied: R reads the counts from ``../shared`` itself.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIXTURES = HERE / "fixtures"
REAL_DIR = Path("..") / "shared" / "data" / "real" / "lemay2019_wholeblood_highfat_meal"  # relative to REPO
SCORES = ("ctra", "inflammatory", "antiviral", "antibody")
CASES = ("example", "real", "unbalanced", "crossover")
STUDY = {"example": "reference_example", "real": "real", "unbalanced": "unbalanced"}  # case -> study (results/)
NORMALIZATION = "vst_subset"  # R's vst(); the model fixtures' scores (test_reference_agreement.FIXTURE_NORMALIZATION)
CROSSOVER_SEED = 20241
CROSSOVER_STUDY = {
    "design": "trial",
    "standardize_predictors": False,
    "covariates": ["age"],
    "adjust_for_cell_markers": True,
}
TEXT = {
    c: str
    for c in (
        "sample",
        "participant",
        "arm",
        "time",
        "period",
        "gene",
        "group",
        "matched_id",
        "reason",
        "score",
        "model",
        "contrast",
    )
}


def unbalanced_exclusions() -> list[str]:
    """The ``post`` draw of every 5th participant (sorted ids, starting with the first) among those with both draws."""
    sheet = pd.read_csv(REPO / "resources" / "example" / "samples.tsv", sep="\t", dtype=str)
    complete = sorted(p for p, times in sheet.groupby("participant")["time"] if {"pre", "post"} <= set(times))
    chosen = complete[::5]
    return sheet.loc[sheet["participant"].isin(chosen) & (sheet["time"] == "post"), "sample"].tolist()


def reference_config() -> dict:
    example = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["studies"]["example"]
    example = {**example, "normalization": NORMALIZATION}
    unbalanced = {**example, "exclude_samples": unbalanced_exclusions()}
    real = {
        "counts": str(REAL_DIR / "fixed_combinedCounts.txt.gz"),
        "samples": str(REAL_DIR / "samples.tsv"),
        "columns": {"sample": "count_column", "participant": "Subject", "arm": "Arm", "time": "time", "period": "Day"},
        "baseline": "0h",
        "control": "Placebo_SunflowerOil",
        "covariates": [],
        "normalization": NORMALIZATION,
    }
    studies = {STUDY["example"]: example, "real": real, "unbalanced": unbalanced}
    return {
        "studies": {name: copy.deepcopy(block) for name, block in studies.items()}
    }  # no shared lists (YAML anchors)


def write_config() -> Path:
    path = HERE / "config.yaml"
    header = (
        "# Studies for the R reference fixtures (written by tests/reference/make_inputs.py; paths relative to\n"
        "# the repository root). Run: snakemake --cores 2 --configfile tests/reference/config.yaml\n"
        f"# The model fixtures were made from scores normalized as R's vst() does (`normalization: {NORMALIZATION}`,\n"
        "# ctra's default before 2026-11-23); the VST methods themselves are checked against both R functions.\n"
        f"# Study {STUDY['example']} is config/config.yaml's example with that normalization (fixture case example).\n"
    )
    path.write_text(header + yaml.safe_dump(reference_config(), sort_keys=False, default_flow_style=None, width=120))
    return path


def run_workflow(cases: list[str]) -> None:
    studies = [STUDY[c] for c in cases if c in STUDY]
    if studies:
        # targets first: --forcerun and --configfile take several values and would swallow them
        subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                *[f"results/{s}/model.json" for s in studies],
                "--cores",
                "2",
                "--forcerun",
                "validate",
                "--configfile",
                "tests/reference/config.yaml",
            ],
            cwd=REPO,
            check=True,
        )


def export_case(case: str) -> None:
    """A workflow case: results/<study>/ -> fixtures/<case>/."""
    results = REPO / "results" / STUDY[case]
    adata = ad.read_h5ad(results / "normalized.h5ad")
    model = json.loads((results / "model.json").read_text())
    # the validate stage's settings (ctra.config.STAGE_KEYS) and the normalization that was run
    study = {**json.loads(adata.uns["study_config"]), "normalization": model["normalization"]["method"]}
    scores = pd.read_csv(results / "scores.tsv", sep="\t", dtype=TEXT, keep_default_na=False, na_values=[""])
    usage = pd.read_csv(results / "genes_used.tsv", sep="\t", dtype=TEXT, keep_default_na=False)
    usage["used"] = usage["used"].astype(str) == "True"
    # the model stage's table (its lmm rows are the main model's); contrasts.tsv of older workflows
    lmm_path = results / "work" / "model_contrasts.tsv"
    if not lmm_path.exists():
        lmm_path = results / "contrasts.tsv"
    contrasts = pd.read_csv(lmm_path, sep="\t", dtype=TEXT, keep_default_na=False, na_values=[""])
    write_case(
        case,
        adata,
        scores,
        usage,
        contrasts,
        list(model["markers_used"]),
        study,
        model["formula"],
        list(model["coefficients"]),
    )


def load_calibration():
    """benchmarks/calibration.py as a module (it is not a package)."""
    path = REPO / "benchmarks" / "calibration.py"
    spec = importlib.util.spec_from_file_location("ctra_calibration", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def export_crossover() -> None:
    """The simulated unbalanced AB/BA crossover (no workflow, no counts): ctra's scores, design and
    contrast keys on benchmarks/calibration.py's cohort, in the workflow cases' layout."""
    from ctra.config import DesignSettings
    from ctra.scoring import score_study
    from ctra.models.mixed import fit_scores
    from ctra.design import study_design

    calibration = load_calibration()
    adata, usage, _ = calibration.simulate(calibration.DESIGNS["crossover_24"], CROSSOVER_SEED)
    usage = usage.copy()
    usage["used"] = usage["used"].astype(bool)
    scores = score_study(adata, usage)
    design, markers = study_design(
        adata, usage, DesignSettings.from_study({**CROSSOVER_STUDY, "samples": "simulated crossover"})
    )
    contrasts, _ = fit_scores(design, scores.set_index("sample")[list(SCORES)], "lmm")
    study = {
        **CROSSOVER_STUDY,
        "normalization": "none (simulated log2 scale)",
        "generator": f"benchmarks/calibration.py simulate(DESIGNS['crossover_24'], seed={CROSSOVER_SEED})",
    }
    write_case("crossover", adata, scores, usage, contrasts, markers, study, design.formula, design.columns)


def write_case(
    case: str,
    adata,
    scores: pd.DataFrame,
    usage: pd.DataFrame,
    contrasts: pd.DataFrame,
    markers: list[str],
    study: dict,
    formula: str,
    coefficients: list[str],
) -> None:
    out = FIXTURES / case
    out.mkdir(parents=True, exist_ok=True)
    covariates = list(study.get("covariates", []))
    has_period = "period" in adata.obs
    design_columns = ["participant", "arm", "time", *(["period"] if has_period else [])]
    obs = adata.obs[design_columns + covariates].copy()
    for column in obs.columns:
        if not pd.api.types.is_numeric_dtype(obs[column]):
            obs[column] = obs[column].astype(str)
    table = obs.reset_index(names="sample")
    score_values = scores.set_index("sample").loc[table["sample"], list(SCORES)].reset_index(drop=True)
    marker_vst = pd.DataFrame(np.asarray(adata[:, markers].layers["vst"], dtype=float), columns=markers)
    table = pd.concat([table, score_values, marker_vst], axis=1)
    table.to_csv(out / "lmm_input.tsv", sep="\t", index=False, float_format="%.12g", lineterminator="\n")

    levels = {k: [str(v) for v in adata.uns["levels"][k]] for k in ("arm", "time")}
    design = {
        "study": case,
        "arm_levels": levels["arm"],
        "time_levels": levels["time"],
        "covariates": covariates,
        "categorical_covariates": [c for c in covariates if not pd.api.types.is_numeric_dtype(obs[c])],
        "markers": markers,
        "period": has_period,
        "ctra_formula": formula,
        "ctra_coefficients": coefficients,
        "excluded_samples": list(study.get("exclude_samples", [])),
        "normalization": study.get("normalization", "fast"),
        "n_samples": int(adata.n_obs),
        **({"generator": study["generator"]} if "generator" in study else {}),
    }
    (out / "design.json").write_text(json.dumps(design, indent=2) + "\n")

    lmm = contrasts[contrasts["model"] == "lmm"] if "model" in contrasts else contrasts
    lmm = lmm[[c for c in ("score", "contrast", "arm", "time", "estimate", "se", "df", "p_value") if c in lmm]]
    lmm.to_csv(out / "ctra_contrasts.tsv", sep="\t", index=False, float_format="%.10g", lineterminator="\n")

    used = usage[usage["used"] & (usage["group"] != "marker")]
    vst = np.asarray(adata[:, used["gene"].tolist()].layers["vst"], dtype=float)
    z = (vst - vst.mean(axis=0)) / vst.std(axis=0, ddof=1) * used["direction"].to_numpy(dtype=float)
    check = scores.set_index("sample").loc[adata.obs_names, "ctra"].to_numpy(dtype=float)
    assert np.allclose(z.mean(axis=1), check, atol=1e-8), f"{case}: z does not reproduce ctra's score"
    long = pd.DataFrame(
        {
            "sample": np.repeat(adata.obs_names.to_numpy(str), len(used)),
            "participant": np.repeat(adata.obs["participant"].to_numpy(str), len(used)),
            "gene": np.tile(used["gene"].to_numpy(str), adata.n_obs),
            "z": z.ravel(),
        }
    ).sort_values(["participant", "sample", "gene"], kind="stable")
    long.to_csv(
        out / "gee_input.tsv.gz",
        sep="\t",
        index=False,
        float_format="%.12g",
        lineterminator="\n",
        compression={"method": "gzip", "mtime": 0},
    )
    print(
        f"{case}: {adata.n_obs} samples, {len(markers)} markers, {len(used)} used genes, "
        f"{len(lmm)} lmm contrasts -> {out.relative_to(REPO)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-workflow", action="store_true", help="use the results/ already there")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    args = parser.parse_args()
    write_config()
    cases = list(args.cases)
    if "real" in cases and not (REPO / REAL_DIR).exists():
        print(f"real cohort not found at {(REPO / REAL_DIR).resolve()}; skipping case 'real'", file=sys.stderr)
        cases.remove("real")
    if not args.skip_workflow:
        run_workflow(cases)
    for case in cases:
        export_crossover() if case == "crossover" else export_case(case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
