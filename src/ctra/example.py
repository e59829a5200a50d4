"""A seeded, realistic example cohort with a known CTRA effect, for the quick start and the tests.

60 participants in three arms (kind acts for others, for oneself, control), blood drawn before and
after; 3 participants miss their second draw. Counts are negative binomial around gene-wise means
with a participant-level CTRA factor (genes move together, as they do in blood), draw-level cell-mix
factors that every gene loads on, gene-specific participant effects, library-size variation and a common drift at the second draw. In the
``kind_others`` arm the CTRA genes move by ``EFFECT_LOG2`` log2 units in the healthy direction at
``post`` (pro-inflammatory down, antiviral and antibody up). Five CTRA genes are barely expressed,
as in real blood, so the expression rule drops them. The count table names CXCL8 by its old symbol
IL8, as many tables still do.

``truth.tsv`` gives the true arm x time contrast in the units of each output: log2 per gene, and
for the scores the expected z-scale effect ``-EFFECT_LOG2 * mean_g(1 / sd_g)`` where ``sd_g`` is the
gene's population SD on the log2 scale, computed from the generating variances (not from the data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ARMS = ("control", "kind_others", "kind_self")
TIMES = ("pre", "post")
TREATED_ARM = "kind_others"
EFFECT_LOG2 = 0.45
N_PARTICIPANTS = 60
N_GENES = 3000
N_MISSING_POST = 3
LOW_EXPRESSED = ("IL6", "IFNB1", "IFITM5", "IFITM4P", "IGLL3P")
OLD_SYMBOLS = {"CXCL8": "IL8"}

# standard deviations on the log2 scale
SD_CTRA_FACTOR = 0.30  # participant's CTRA level, shared by all CTRA genes (signed)
SD_PARTICIPANT_GENE = 0.25  # participant x gene
SD_SAMPLE_FACTOR = 0.15  # draw-level CTRA state, shared by all CTRA genes (signed)
SD_RESIDUAL = 0.20  # draw x gene
COMMON_DRIFT = 0.10  # every arm's change at post (log2, all genes of the set)
N_CELL_FACTORS = 4  # draw-level cell-mix factors every gene loads on (genes co-vary, as in blood)
SD_LOADING = 0.15  # SD of a gene's loading on a cell-mix factor (factor SD 1)
AGE_SLOPE = 0.006  # log2 per year, signed with CTRA direction


def _gene_table(gene_set: pd.DataFrame, markers: pd.DataFrame) -> pd.DataFrame:
    named = pd.concat(
        [gene_set[["gene", "group", "direction"]], markers[["gene", "group"]].assign(direction=0)], ignore_index=True
    )
    n_other = N_GENES - len(named)
    other = pd.DataFrame({"gene": [f"SYN{i:05d}" for i in range(1, n_other + 1)], "group": "", "direction": 0})
    return pd.concat([named, other], ignore_index=True)


def _sample_sheet(rng: np.random.Generator) -> pd.DataFrame:
    participants = [f"P{i:03d}" for i in range(1, N_PARTICIPANTS + 1)]
    arms = np.repeat(ARMS, N_PARTICIPANTS // len(ARMS))
    rng.shuffle(arms)
    people = pd.DataFrame(
        {
            "participant": participants,
            "arm": arms,
            "age": rng.integers(22, 71, N_PARTICIPANTS),
            "sex": rng.choice(["F", "M"], N_PARTICIPANTS),
            "bmi": np.round(rng.normal(26, 4, N_PARTICIPANTS), 1),
        }
    )
    missing = set(rng.choice(participants, N_MISSING_POST, replace=False))
    rows = [
        {"sample": f"{p.participant}_{t}", **p._asdict(), "time": t}
        for p in people.itertuples(index=False)
        for t in TIMES
        if not (t == "post" and p.participant in missing)
    ]
    sheet = pd.DataFrame(rows)
    return sheet[["sample", "participant", "arm", "time", "age", "sex", "bmi"]]


def _base_means(genes: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    means = np.exp(rng.normal(4.0, 2.0, len(genes)))
    in_set = genes["group"].ne("").to_numpy()
    means[in_set] = np.exp(rng.uniform(np.log(80), np.log(4000), in_set.sum()))
    means[genes["gene"].isin(LOW_EXPRESSED).to_numpy()] = 0.08
    return means


def _dispersions(means: np.ndarray) -> np.ndarray:
    return 0.03 + 1.5 / np.maximum(means, 1)


def simulate(
    seed: int, gene_set: pd.DataFrame, markers: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Counts (genes x samples), sample sheet and truth table for the example cohort."""
    rng = np.random.default_rng(seed)
    genes = _gene_table(gene_set, markers)
    sheet = _sample_sheet(rng)
    n_genes, n_samples = len(genes), len(sheet)
    means = _base_means(genes, rng)
    direction = genes["direction"].to_numpy(float)
    in_set = genes["group"].isin(gene_set["group"].unique()).to_numpy()
    participant_index = pd.factorize(sheet["participant"])[0]
    n_people = participant_index.max() + 1
    ctra_factor = rng.normal(0, SD_CTRA_FACTOR, n_people)[participant_index]
    person_gene = rng.normal(0, SD_PARTICIPANT_GENE, (n_people, n_genes))[participant_index]
    sample_factor = rng.normal(0, SD_SAMPLE_FACTOR, n_samples)
    loadings = rng.normal(0, SD_LOADING, (N_CELL_FACTORS, n_genes))
    cell_mix = rng.normal(0, 1, (n_samples, N_CELL_FACTORS)) @ loadings
    post = (sheet["time"] == "post").to_numpy(float)
    treated = post * (sheet["arm"] == TREATED_ARM).to_numpy(float)
    age_centered = sheet["age"].to_numpy(float) - 45
    signed_state = ctra_factor + sample_factor + AGE_SLOPE * age_centered - EFFECT_LOG2 * treated
    log2_mean = (
        np.log2(means)[None, :]
        + person_gene
        + rng.normal(0, SD_RESIDUAL, (n_samples, n_genes))
        + cell_mix
        + np.outer(signed_state, direction)
        + np.outer(post, in_set * COMMON_DRIFT)
    )
    library = np.exp(rng.normal(0, 0.25, n_samples))[:, None]
    mu = library * np.exp2(log2_mean)
    alpha = _dispersions(means)[None, :]
    counts = rng.negative_binomial(1 / alpha, 1 / (1 + alpha * mu))
    names = genes["gene"].replace(OLD_SYMBOLS)
    table = pd.DataFrame(counts.T, index=names, columns=sheet["sample"])
    table.index.name = "gene"
    truth = _truth(genes, means, sheet, (loadings**2).sum(axis=0))
    return table, sheet, truth


def _truth(genes: pd.DataFrame, means: np.ndarray, sheet: pd.DataFrame, cell_mix_var: np.ndarray) -> pd.DataFrame:
    """True arm x time contrasts: log2 per gene; z-units for the scores (see module docstring)."""
    expressed = genes["group"].isin(["inflammatory", "antiviral", "antibody"]) & ~genes["gene"].isin(LOW_EXPRESSED)
    scored = genes[expressed]
    treated_share = float(((sheet["arm"] == TREATED_ARM) & (sheet["time"] == "post")).mean())
    post_share = float((sheet["time"] == "post").mean())
    age_var = float(sheet["age"].var())
    g_means = means[expressed.to_numpy()]
    sampling = (1 / g_means + _dispersions(g_means)) / np.log(2) ** 2
    variance = (
        SD_CTRA_FACTOR**2
        + SD_PARTICIPANT_GENE**2
        + SD_SAMPLE_FACTOR**2
        + SD_RESIDUAL**2
        + AGE_SLOPE**2 * age_var
        + EFFECT_LOG2**2 * treated_share * (1 - treated_share)
        + COMMON_DRIFT**2 * post_share * (1 - post_share)
        + sampling
        + cell_mix_var[expressed.to_numpy()]
    )
    inverse_sd = 1 / np.sqrt(variance)
    rows = [{"output": "contrasts", "name": "ctra", "truth": -EFFECT_LOG2 * inverse_sd.mean()}]
    for group in ("inflammatory", "antiviral", "antibody"):
        in_group = (scored["group"] == group).to_numpy()
        sign = -1.0 if group == "inflammatory" else 1.0
        rows.append({"output": "contrasts", "name": group, "truth": sign * EFFECT_LOG2 * inverse_sd[in_group].mean()})
    rows += [
        {"output": "genes", "name": g, "truth": -EFFECT_LOG2 * d} for g, d in zip(scored["gene"], scored["direction"])
    ]
    truth = pd.DataFrame(rows)
    truth.insert(2, "contrast", "arm_x_time")
    truth.insert(3, "arm", TREATED_ARM)
    truth.insert(4, "time", "post")
    return truth


def write_example(out_dir: str | Path, seed: int = 20261122, gene_set_dir: str | Path = "resources/gene_sets") -> None:
    """Write counts.tsv.gz, samples.tsv and truth.tsv into ``out_dir`` (byte-identical per seed)."""
    from .genesets import load_gene_set

    gene_set = load_gene_set(Path(gene_set_dir) / "ctra53.tsv")
    markers = load_gene_set(Path(gene_set_dir) / "leukocyte_markers.tsv", allowed_groups=("marker",))
    counts, sheet, truth = simulate(seed, gene_set, markers)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    import gzip

    with gzip.GzipFile(out / "counts.tsv.gz", "wb", mtime=0) as handle:
        handle.write(counts.to_csv(sep="\t", lineterminator="\n").encode())
    sheet.to_csv(out / "samples.tsv", sep="\t", index=False, lineterminator="\n")
    truth.to_csv(out / "truth.tsv", sep="\t", index=False, float_format="%.6f", lineterminator="\n")
