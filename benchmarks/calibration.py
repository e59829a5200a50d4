"""Calibration of every p-value ctra prints: rejection rates under the null, power and CI coverage.

Simulates seeded cohorts on the log2 (VST) scale and runs each through the same library calls as
the workflow's model, null and robustness stages (``analyse``): the main mixed model, the gene-level
GEE, the permutation test, the random-gene-set null and the endpoint columns. Prints, per design,
the rejection rate at 5 % with a Clopper-Pearson 95 % CI for each p-value column, and with a true
effect the power and the 95 % CI coverage of the primary estimate.

Cohort model (per gene j, sample s of participant i): ``mu_j + u_ij + kappa_j . g_i + lambda_j . f_s
+ e_sj`` with a participant effect u, three participant-level and three draw-level latent factors
(g, f) that make genes correlated (within the set and with the pool), and noise e; gene parameters
are drawn per cohort from one distribution for the 53 set genes, the 8 markers and 800 pool genes
alike, so the set is exchangeable with the pool (except in ``unstable_set_30``, whose set genes vary
less between people, and the ``coregulated`` designs, whose set genes share a person-level and a
draw-level factor with direction-consistent loadings, as the real CTRA genes do: the gene-level GEE's
exchangeable correlation is then about 0.3 instead of 0). About 10 % of participants miss their last draw.
Crossover cohorts add a participant:period effect and a period effect on level and on change
(period x time), with 16 AB / 8 BA sequences. Under the alternative, every set gene moves by
``-effect x direction`` at the treated draws (the last arm at post), which lowers the CTRA score.

    python benchmarks/calibration.py                   # 400 null + 200 effect cohorts per design
    python benchmarks/calibration.py --cohorts 100 --effect-cohorts 50 --designs parallel_10
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ctra.config import DesignSettings, PrimarySettings, RobustnessSettings  # noqa: E402
from ctra.endpoints import association_endpoint, mark_endpoints, primary_endpoint  # noqa: E402
from ctra.genesets import load_gene_set  # noqa: E402
from ctra.models.gee import gee_table  # noqa: E402
from ctra.models.per_gene_t import per_gene_table  # noqa: E402
from ctra.models.sensitivity import sensitivity_table  # noqa: E402
from ctra.safeguards import gene_set_null, permutation_draws, robustness_table  # noqa: E402
from ctra.scoring import gene_summaries, score_study  # noqa: E402
from ctra.models.mixed import contrast_specs, contrast_table, fit_reml, fit_scores  # noqa: E402
from ctra.design import study_design  # noqa: E402

N_POOL = 800
N_FACTORS = 3
MISSING = 0.10  # share of participants missing their last draw
PERMUTATIONS = 1000  # fewer than the workflow's 5,000: the size of a permutation test does not depend on it
GENE_SETS = 200
COLUMNS = ("p_value", "p_holm", "perm_p", "geneset_p", "gee_p", "unadjusted_p", "gene_p")


@dataclass(frozen=True)
class DesignSpec:
    """One simulated study design."""

    arms: tuple[str, ...]
    per_arm: int = 15
    covariates: tuple[str, ...] = ("age",)
    markers: bool | str = True  # adjust_for_cell_markers
    crossover: tuple[int, int] | None = None  # participants per sequence (AB, BA)
    effect: float = 0.2  # log2 shift of each set gene at the treated draws (alternative)
    stable_set: bool = True  # False: set genes less person-stable than the pool
    coregulated: bool = False  # True: set genes share a person and a draw factor (real CTRA)
    notes: str = ""


DESIGNS = {
    "parallel_30": DesignSpec(arms=("control", "active"), effect=0.1, notes="2 arms x 15, age + 8 markers"),
    "parallel_10": DesignSpec(
        arms=("control", "active"),
        per_arm=5,
        markers=False,
        effect=0.2,
        notes="2 arms x 5, age, no markers (exact permutations: 252)",
    ),
    "three_arm_45": DesignSpec(arms=("control", "self", "others"), effect=0.1, notes="3 arms x 15, age + 8 markers"),
    "crossover_24": DesignSpec(
        arms=("control", "active"),
        crossover=(16, 8),
        effect=0.06,
        notes="AB/BA 16/8, pre/post per period, period effects, age + 8 markers",
    ),
    "unstable_set_30": DesignSpec(
        arms=("control", "active"),
        stable_set=False,
        effect=0.1,
        notes="as parallel_30, set genes less person-stable than the pool",
    ),
    "coregulated_30": DesignSpec(
        arms=("control", "active"),
        coregulated=True,
        effect=0.15,
        notes="as parallel_30, set genes co-regulated (GEE alpha 0.15-0.25; 0.32 in the example)",
    ),
    "coregulated_10": DesignSpec(
        arms=("control", "active"),
        per_arm=5,
        markers=False,
        coregulated=True,
        effect=0.3,
        notes="as parallel_10, set genes co-regulated",
    ),
    "default_16": DesignSpec(
        arms=("control", "active"),
        per_arm=8,
        markers="auto",
        effect=0.15,
        notes="2 arms x 8, age, default adjust_for_cell_markers: auto (17 df: markers left out)",
    ),
    "forced_markers_10": DesignSpec(
        arms=("control", "active"),
        per_arm=5,
        markers=True,
        effect=0.2,
        notes="2 arms x 5, age + 8 markers forced (adjust_for_cell_markers: true): what auto avoids",
    ),
}


def _genes() -> pd.DataFrame:
    """The 53 CTRA genes (group, direction), the 8 markers and the pool, in that order."""
    ctra = load_gene_set(REPO / "resources" / "gene_sets" / "ctra53.tsv")[["gene", "group", "direction"]]
    markers = load_gene_set(REPO / "resources" / "gene_sets" / "leukocyte_markers.tsv", allowed_groups=("marker",))[
        ["gene", "group", "direction"]
    ]
    pool = pd.DataFrame({"gene": [f"POOL{j:04d}" for j in range(N_POOL)], "group": "", "direction": 0})
    genes = pd.concat([ctra, markers[~markers["gene"].isin(ctra["gene"])], pool], ignore_index=True)
    genes["direction"] = pd.to_numeric(genes["direction"], errors="coerce").fillna(0).astype(int)
    return genes


GENES = _genes()


def sample_sheet(spec: DesignSpec, rng: np.random.Generator) -> pd.DataFrame:
    """One row per draw: participant, arm, time, [period], age."""
    rows = []
    if spec.crossover:
        sequences = [("control", "active")] * spec.crossover[0] + [("active", "control")] * spec.crossover[1]
        people = len(sequences)
    else:
        people = spec.per_arm * len(spec.arms)
    missing = set(rng.choice(people, int(round(MISSING * people)), replace=False))
    for i in range(people):
        age = rng.normal(50, 10)
        if spec.crossover:
            for p, arm in enumerate(sequences[i]):
                for t in ("pre", "post"):
                    if not (i in missing and p == 1 and t == "post"):
                        rows.append((f"P{i:03d}", arm, t, str(p + 1), age))
        else:
            arm = spec.arms[i % len(spec.arms)]
            for t in ("pre", "post"):
                if not (i in missing and t == "post"):
                    rows.append((f"P{i:03d}", arm, t, None, age))
    obs = pd.DataFrame(rows, columns=["participant", "arm", "time", "period", "age"])
    if not spec.crossover:
        obs = obs.drop(columns="period")
    obs.index = [f"S{j:04d}" for j in range(len(obs))]
    return obs


def simulate(spec: DesignSpec, seed: int, effect: float = 0.0):
    """A cohort as the model stage sees it: AnnData (layer ``vst``, var with group/expressed/vst_mean),
    the genes-used table, and the true primary effect on the CTRA score scale."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    obs = sample_sheet(spec, rng)
    n, n_genes = len(obs), len(GENES)
    person = pd.factorize(obs["participant"])[0]
    n_people = person.max() + 1
    mu = rng.normal(8, 1.5, n_genes)
    sd_person, sd_noise = rng.uniform(0.2, 0.6, n_genes), rng.uniform(0.2, 0.5, n_genes)
    in_set = GENES["group"].isin(["inflammatory", "antiviral", "antibody"]).to_numpy()
    if not spec.stable_set:  # the reviewer's case: a set whose genes vary less between people than the pool
        sd_person[in_set] = rng.uniform(0.02, 0.15, in_set.sum())
    kappa, lam = rng.normal(0, 0.3, (N_FACTORS, n_genes)), rng.normal(0, 0.35, (N_FACTORS, n_genes))
    values = (
        mu
        + rng.normal(size=(n_people, n_genes))[person] * sd_person
        + rng.normal(size=(n_people, N_FACTORS))[person] @ kappa
        + rng.normal(size=(n, N_FACTORS)) @ lam
        + rng.normal(size=(n, n_genes)) * sd_noise
    )
    fixed = np.zeros((n, n_genes))
    random_var = sd_person**2 + sd_noise**2 + (kappa**2).sum(0) + (lam**2).sum(0)
    if spec.coregulated:  # one person-level and one draw-level factor that the set genes share, signed
        direction = GENES["direction"].to_numpy(float) * in_set
        person_load, draw_load = (
            direction * rng.uniform(0.3, 0.6, n_genes),
            direction * rng.uniform(0.15, 0.35, n_genes),
        )
        values += np.outer(rng.normal(size=n_people)[person], person_load) + np.outer(rng.normal(size=n), draw_load)
        random_var += person_load**2 + draw_load**2
    if spec.crossover:
        unit = pd.factorize(obs["participant"] + ":" + obs["period"])[0]
        sd_unit = rng.uniform(0.1, 0.3, n_genes)
        values += rng.normal(size=(unit.max() + 1, n_genes))[unit] * sd_unit
        random_var += sd_unit**2
        second = (obs["period"] == "2").to_numpy(float)
        post = (obs["time"] == "post").to_numpy(float)
        fixed += np.outer(second, rng.normal(0.4, 0.2, n_genes)) + np.outer(
            second * post, rng.normal(0.3, 0.1, n_genes)
        )
    treated = ((obs["arm"] == spec.arms[-1]) & (obs["time"] == "post")).to_numpy(float)
    shift = -effect * GENES["direction"].to_numpy(float)
    fixed += np.outer(treated, shift)
    values += fixed
    var = GENES.set_index("gene")[["group"]].copy()
    adata = ad.AnnData(obs=obs, var=var, layers={"vst": values})
    adata.var[["expressed", "vst_mean", "vst_var"]] = gene_summaries(adata)
    adata.uns["levels"] = {"arm": list(spec.arms), "time": ["pre", "post"]}
    usage = GENES[GENES["group"] != ""].assign(used=True).reset_index(drop=True)
    sd = np.sqrt(random_var + fixed.var(axis=0))
    truth = float(np.mean((shift * GENES["direction"].to_numpy(float) / sd)[in_set]))
    return adata, usage, truth


def study_config(spec: DesignSpec, seed: int) -> dict:
    return {
        "samples": "simulated",
        "design": "trial",
        "standardize_predictors": False,
        "covariates": list(spec.covariates),
        "adjust_for_cell_markers": spec.markers,
        "primary": {"score": "ctra", "contrast": "arm_x_time"},
        "robustness": {"permutations": PERMUTATIONS, "gene_sets": GENE_SETS, "seed": seed, "chunks": 1},
    }


def analyse(adata, usage: pd.DataFrame, study: dict, per_gene: bool = False) -> pd.DataFrame:
    """contrasts.tsv's CTRA rows, by the calls the model, null and robustness stages make (a trial's or an
    association study's; ``per_gene``: also the as-published per-gene t)."""
    settings = RobustnessSettings.from_study(study)  # the draws in one chunk: no `chunks` needed
    scores = score_study(adata, usage).set_index("sample")[["ctra"]]
    design, _ = study_design(adata, usage, settings.design)
    main, gammas = fit_scores(design, scores, "lmm")
    models = [
        main,
        gee_table(adata, usage, design, scores=("ctra",)),
        sensitivity_table(adata, scores, usage, settings.design),
    ] + ([per_gene_table(adata, usage, design, scores=("ctra",))] if per_gene else [])
    nulls = permutation_draws(design, scores, study["robustness"]["permutations"], settings.seed, 0, 1)
    nulls += gene_set_null(adata, usage, design, scores, settings.gene_sets, settings.seed, 0, 1)[0]
    table = robustness_table(
        adata,
        scores,
        usage,
        settings,
        pd.concat(models, ignore_index=True),
        gammas,
        pd.concat(nulls, ignore_index=True),
    )
    primary = PrimarySettings.from_study(study)
    if design.kind == "association":
        return mark_endpoints(table, association_endpoint(primary, design.terms))
    return mark_endpoints(table, primary_endpoint(primary, True))


def one_cohort(args: tuple[str, int, float]) -> dict:
    """The primary rows' p-values, estimate, SE and CI of one cohort, and whether Holm rejected any."""
    name, seed, effect = args
    spec = DESIGNS[name]
    adata, usage, truth = simulate(spec, seed, effect)
    table = analyse(adata, usage, study_config(spec, seed))
    primary = table[table["role"] == "primary"].set_index("arm")
    gee = table[(table["model"] == "gee_genes") & (table["contrast"] == "arm_x_time")].set_index("arm")
    unadjusted = table[(table["model"] == "lmm_unadjusted") & (table["contrast"] == "arm_x_time")].set_index("arm")
    arm = spec.arms[-1]  # one test per cohort (independent replicates): the last arm's
    row = primary.loc[arm]
    gene = gene_p(adata, usage, study_config(spec, seed), arm)
    return {
        "design": name,
        "seed": seed,
        "effect": effect,
        "truth": truth,
        "estimate": row["estimate"],
        "se": row["se"],
        "ci_low": row["ci_low"],
        "ci_high": row["ci_high"],
        "p_value": row["p_value"],
        "p_holm": float(primary["p_holm"].min()),
        "perm_p": row["perm_p"],
        "geneset_p": row["geneset_p"],
        "gee_p": gee.loc[arm, "p_value"],
        "unadjusted_p": unadjusted.loc[arm, "p_value"] if arm in unadjusted.index else row["p_value"],
        "gene_p": gene,
        "perm_note": row["note"],
    }


def gene_p(adata, usage: pd.DataFrame, study: dict, arm: str) -> float:
    """genes.tsv's p for one gene (the first of the set), by the calls ``stats.fit_genes`` makes."""
    design, _ = study_design(adata, usage, DesignSettings.from_study(study))
    gene = usage.loc[usage["group"] != "marker", "gene"].iloc[0]
    table = contrast_table(
        fit_reml(design, np.asarray(adata[:, gene].layers["vst"])[:, 0]), design, contrast_specs(design)
    )
    return float(table.loc[(table["contrast"] == "arm_x_time") & (table["arm"] == arm), "p_value"].iloc[0])


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Exact binomial 95 % CI for k successes in n."""
    from scipy.stats import beta

    low = beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
    high = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


def map_cohorts(one_cohort, jobs: list[tuple], processes: int) -> pd.DataFrame:
    """``one_cohort`` of every job, in forked processes (one BLAS thread each), as one row per cohort."""
    if processes > 1:
        from multiprocessing import get_context

        with get_context("fork").Pool(processes) as pool:
            return pd.DataFrame(pool.map(one_cohort, jobs, chunksize=4))
    return pd.DataFrame([one_cohort(job) for job in jobs])


def run(designs: list[str], cohorts: int, effect_cohorts: int, processes: int = 2) -> pd.DataFrame:
    """Every cohort's primary-row results (null cohorts seeded 1.., effect cohorts 100001..)."""
    jobs = [(d, seed, 0.0) for d in designs for seed in range(1, cohorts + 1)]
    jobs += [(d, 100_000 + seed, DESIGNS[d].effect) for d in designs for seed in range(1, effect_cohorts + 1)]
    return map_cohorts(one_cohort, jobs, processes)


def rejection_rate(p: pd.Series) -> dict:
    """How many of the computed p-values are below 5 %: cohorts, rejected, rate and its exact 95 % CI."""
    values = p.dropna()
    k, n = int((values < 0.05).sum()), len(values)
    low, high = clopper_pearson(k, n) if n else (math.nan, math.nan)
    return {"cohorts": n, "rejected": k, "rate": k / n if n else math.nan, "ci_low": low, "ci_high": high}


def rate_cell(row: pd.Series) -> str:
    """A rejection rate as the README's tables show it: percent with its CI, or 'not fitted'."""
    if not row["cohorts"]:
        return "not fitted"
    return f"{100 * row['rate']:.1f} ({100 * row['ci_low']:.1f}-{100 * row['ci_high']:.1f})"


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Per design and p-value column: rejection rate at 5 % under the null with its 95 % CI (for
    p_holm: the family-wise rate, any primary test rejected), and with the effect: power; plus the
    primary estimate's mean in SE units under the null and its CI coverage under the effect."""
    out = []
    for name, group in results.groupby("design", sort=False):
        null, alt = group[group["effect"] == 0], group[group["effect"] > 0]
        for column in COLUMNS:
            power = float((alt[column].dropna() < 0.05).mean()) if len(alt[column].dropna()) else math.nan
            out.append({"design": name, "column": column, **rejection_rate(null[column]), "power": power})
        covered = (alt["ci_low"] <= alt["truth"]) & (alt["truth"] <= alt["ci_high"])
        out.append(
            {
                "design": name,
                "column": "estimate",
                "cohorts": len(null),
                "rate": float((null["estimate"] / null["se"]).mean()),
                "ci_low": math.nan,
                "ci_high": math.nan,
                "power": float(covered.mean()) if len(alt) else math.nan,
            }
        )
    return pd.DataFrame(out)


def markdown(summary: pd.DataFrame) -> str:
    """The README's calibration table."""
    lines = [
        "| design | cohorts | lmm `p_value` | `p_holm` (any primary) | `perm_p` | `geneset_p` | GEE `p_value` "
        "| `lmm_unadjusted` `p_value` | one gene (`genes.tsv`) | mean estimate / SE under H0 | power (`p_value`) "
        "| 95 % CI coverage |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, group in summary.groupby("design", sort=False):
        cell = group.set_index("column")
        lines.append(
            f"| {name}: {DESIGNS[name].notes} | {int(cell.loc['p_value', 'cohorts'])} | "
            + " | ".join(rate_cell(cell.loc[c]) for c in COLUMNS)
            + f" | {cell.loc['estimate', 'rate']:+.3f} | {100 * cell.loc['p_value', 'power']:.0f} % "
            f"| {100 * cell.loc['estimate', 'power']:.1f} % |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--cohorts", type=int, default=400, help="null cohorts per design")
    parser.add_argument("--effect-cohorts", type=int, default=200, help="cohorts with a true effect per design")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", help="also write every cohort's row to this TSV")
    args = parser.parse_args()
    start = time.perf_counter()
    results = run(args.designs, args.cohorts, args.effect_cohorts, args.processes)
    if args.out:
        results.to_csv(args.out, sep="\t", index=False)
    summary = summarise(results)
    print(summary.to_string(index=False))
    print()
    print(markdown(summary))
    print(f"\n{len(results)} cohorts in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
