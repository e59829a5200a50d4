"""Calibration of the association design's p-values (``design: association``): rejection rates under the null.

The association counterpart of ``benchmarks/calibration.py`` (same gene model, same summaries): seeded
cohorts on the log2 (VST) scale, each run through the library calls of the model, null and robustness
stages, and the rejection rate at 5 % of every p-value column of the primary row (ctra score, the
predictor ``x``) with a Clopper-Pearson 95 % CI.

Cohort model: the genes of ``calibration.simulate`` (53 set genes, 8 markers, 800 pool genes; a
participant effect, three participant-level and three draw-level latent factors, noise), plus
covariates that act on every gene (``age``, ``female``: a slope per gene) and a predictor ``x``
correlated with them (r about 0.6 with age) that acts on no gene: the null is "no association at fixed
covariates", and leaving the covariates out confounds it. The multi-draw design gives participants 1-3
draws (times t0-t2, with a time effect on every gene) and a time-varying ``x`` (a participant-level part
correlated with age plus draw-level noise).

    python benchmarks/calibration_association.py                 # 400 null cohorts per design
    python benchmarks/calibration_association.py --cohorts 200 --designs one_draw_30
    python benchmarks/calibration_association.py --designs one_draw_108 --cohorts 300 --first-seed 401
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from calibration import GENES, N_FACTORS, analyse, clopper_pearson, map_cohorts, rate_cell, rejection_rate  # noqa: E402
from ctra.config import RobustnessSettings  # noqa: E402
from ctra.design import study_design  # noqa: E402
from ctra.models.per_gene_t import per_gene_table  # noqa: E402
from ctra.scoring import gene_summaries  # noqa: E402

PERMUTATIONS = 1000
GENE_SETS = 200
COLUMNS = ("p_value", "perm_p", "geneset_p", "gee_p", "per_gene_p", "no_covariates_p")


@dataclass(frozen=True)
class AssociationSpec:
    participants: int
    max_draws: int = 1  # draws per participant: 1, or uniform on 1..max_draws
    markers: bool | str = "auto"
    coregulated: bool = False  # set genes share a person and a draw factor, direction-consistent (real CTRA)
    notes: str = ""


DESIGNS = {
    "one_draw_30": AssociationSpec(
        30, notes="30 participants x 1 draw, x ~ age (r 0.6) + female, covariates act on genes; markers auto (out)"
    ),
    "one_draw_108": AssociationSpec(
        108, markers=True, notes="108 x 1 draw (the HRS size), as one_draw_30, + 8 markers"
    ),
    "multi_draw_40": AssociationSpec(
        40, max_draws=3, notes="40 participants x 1-3 draws, time-varying x, time effect, random intercept"
    ),
    "coregulated_108": AssociationSpec(
        108,
        markers=True,
        coregulated=True,
        notes="as one_draw_108, set genes co-regulated as the real CTRA genes (a shared, direction-consistent factor)",
    ),
    "coregulated_multi_40": AssociationSpec(
        40, max_draws=3, coregulated=True, notes="as multi_draw_40, set genes co-regulated"
    ),
}


def simulate(spec: AssociationSpec, seed: int):
    """(AnnData with layer vst, genes-used table) of one null cohort."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    draws = (
        rng.integers(1, spec.max_draws + 1, spec.participants)
        if spec.max_draws > 1
        else np.ones(spec.participants, int)
    )
    person = np.repeat(np.arange(spec.participants), draws)
    slot = np.concatenate([np.arange(d) for d in draws])
    age = rng.normal(0, 1, spec.participants)
    female = (rng.random(spec.participants) < 0.5).astype(float)
    x_person = 0.6 * age + 0.3 * (female - 0.5) + rng.normal(0, 0.75, spec.participants)
    x = x_person[person] + (rng.normal(0, 0.5, len(person)) if spec.max_draws > 1 else 0.0)
    obs = pd.DataFrame(
        {
            "participant": [f"P{i:03d}" for i in person],
            "x": x,
            "age": 50 + 10 * age[person],
            "female": female[person],
        },
        index=[f"S{j:04d}" for j in range(len(person))],
    )
    if spec.max_draws > 1:
        obs["time"] = [f"t{s}" for s in slot]
    n, n_genes = len(obs), len(GENES)
    people = spec.participants
    values = (
        rng.normal(8, 1.5, n_genes)
        + rng.normal(size=(people, n_genes))[person] * rng.uniform(0.2, 0.6, n_genes)
        + rng.normal(size=(people, N_FACTORS))[person] @ rng.normal(0, 0.3, (N_FACTORS, n_genes))
        + rng.normal(size=(n, N_FACTORS)) @ rng.normal(0, 0.35, (N_FACTORS, n_genes))
        + rng.normal(size=(n, n_genes)) * rng.uniform(0.2, 0.5, n_genes)
        + np.outer(age[person], rng.normal(0, 0.15, n_genes))
        + np.outer(female[person], rng.normal(0, 0.15, n_genes))
    )
    if spec.max_draws > 1:
        values += np.outer(slot, rng.normal(0, 0.1, n_genes))
    if spec.coregulated:  # as calibration.py's coregulated designs: the set genes move together, signed
        in_set = GENES["group"].isin(["inflammatory", "antiviral", "antibody"]).to_numpy()
        direction = GENES["direction"].to_numpy(float) * in_set
        values += np.outer(rng.normal(size=people)[person], direction * rng.uniform(0.3, 0.6, n_genes))
        values += np.outer(rng.normal(size=n), direction * rng.uniform(0.15, 0.35, n_genes))
    var = GENES.set_index("gene")[["group"]].copy()
    adata = ad.AnnData(obs=obs, var=var, layers={"vst": values})
    adata.var[["expressed", "vst_mean", "vst_var"]] = gene_summaries(adata)
    adata.uns["levels"] = {"time": [f"t{s}" for s in range(spec.max_draws)]} if spec.max_draws > 1 else {}
    usage = GENES[GENES["group"] != ""].assign(used=True).reset_index(drop=True)
    return adata, usage


def study_config(spec: AssociationSpec, seed: int) -> dict:
    return {
        "samples": "simulated",
        "design": "association",
        "predictors": ["x"],
        "standardize_predictors": False,
        "time": "time" if spec.max_draws > 1 else None,
        "covariates": ["age", "female"],
        "adjust_for_cell_markers": spec.markers,
        "primary": {"score": "ctra", "contrast": "arm_x_time"},  # as the schema fills it (the contrast is not read)
        "robustness": {"permutations": PERMUTATIONS, "gene_sets": GENE_SETS, "seed": seed, "chunks": 1},
    }


def one_cohort(args: tuple[str, int]) -> dict:
    name, seed = args
    spec = DESIGNS[name]
    adata, usage = simulate(spec, seed)
    table = analyse(adata, usage, study_config(spec, seed), per_gene=True)
    row = table[table["role"] == "primary"].iloc[0]

    def p(model: str) -> float:
        rows = table[(table["model"] == model) & (table["term"] == "x")]
        return float(rows["p_value"].iloc[0]) if len(rows) else math.nan

    return {
        "design": name,
        "seed": seed,
        "estimate": row["estimate"],
        "se": row["se"],
        "p_value": row["p_value"],
        "perm_p": row["perm_p"],
        "geneset_p": row["geneset_p"],
        "gee_p": p("gee_genes"),
        "per_gene_p": p("per_gene_t"),
        "no_covariates_p": p("lmm_no_covariates"),
    }


def run(designs: list[str], cohorts: int, processes: int = 2, first_seed: int = 1) -> pd.DataFrame:
    jobs = [(d, seed) for d in designs for seed in range(first_seed, first_seed + cohorts)]
    return map_cohorts(one_cohort, jobs, processes)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    out = []
    for name, group in results.groupby("design", sort=False):
        for column in COLUMNS:
            out.append({"design": name, "column": column, **rejection_rate(group[column])})
        out.append(
            {
                "design": name,
                "column": "estimate",
                "cohorts": len(group),
                "rate": float((group["estimate"] / group["se"]).mean()),
            }
        )
    return pd.DataFrame(out)


def markdown(summary: pd.DataFrame) -> str:
    lines = [
        "| design | cohorts | lmm (OLS / mixed) `p_value` | `perm_p` (Freedman-Lane) | `geneset_p` | GEE `p_value` "
        "| `per_gene_t` `p_value` | `lmm_no_covariates` `p_value` (confounded by design) | mean estimate / SE under H0 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, group in summary.groupby("design", sort=False):
        cell = group.set_index("column")
        lines.append(
            f"| {name}: {DESIGNS[name].notes} | {int(cell.loc['p_value', 'cohorts'])} | "
            + " | ".join(rate_cell(cell.loc[c]) for c in COLUMNS)
            + f" | {cell.loc['estimate', 'rate']:+.3f} |"
        )
    return "\n".join(lines)


def trial_per_gene(args: tuple[str, int]) -> dict:
    """``per_gene_t``'s p of the primary arm x time test on one null cohort of a trial design of
    ``calibration.py`` (the other columns of those designs are in its own table)."""
    import calibration

    name, seed = args
    spec = calibration.DESIGNS[name]
    adata, usage, _ = calibration.simulate(spec, seed, 0.0)
    design, _ = study_design(adata, usage, RobustnessSettings.from_study(calibration.study_config(spec, seed)).design)
    table = per_gene_table(adata, usage, design, scores=("ctra",))
    row = table[(table["contrast"] == "arm_x_time") & (table["arm"] == spec.arms[-1])].iloc[0]
    return {"design": name, "seed": seed, "per_gene_p": row["p_value"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", nargs="*", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--cohorts", type=int, default=400, help="null cohorts per design")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--first-seed", type=int, default=1, help="seeds first-seed .. first-seed + cohorts - 1 (more cohorts: 401)"
    )
    parser.add_argument("--out", help="also write every cohort's row to this TSV")
    parser.add_argument(
        "--trial-designs", nargs="*", default=[], help="also per_gene_t on these designs of calibration.py"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    for name in args.trial_designs:
        rows = pd.DataFrame([trial_per_gene((name, seed)) for seed in range(1, args.cohorts + 1)])
        k, n = int((rows["per_gene_p"] < 0.05).sum()), len(rows)
        low, high = clopper_pearson(k, n)
        print(f"trial {name}: per_gene_t rejects {100 * k / n:.1f} % ({100 * low:.1f}-{100 * high:.1f}) of {n}")
    if not args.designs:
        return
    results = run(args.designs, args.cohorts, args.processes, args.first_seed)
    if args.out:
        results.to_csv(args.out, sep="\t", index=False)
    summary = summarise(results)
    print(summary.to_string(index=False))
    print()
    print(markdown(summary))
    print(f"\n{len(results)} cohorts in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
