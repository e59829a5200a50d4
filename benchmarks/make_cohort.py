"""Seeded synthetic cohorts for the performance benchmark (written under ``benchmarks/data/``).

Scales (2 blood draws per participant, 20,000 genes):

* ``trial``   182 participants = 364 samples (a ~24 MB table),
* ``biobank`` 5,000 participants = 10,000 samples,
* ``trial2``/``trial4`` 2x / 4x the trial's participants (for the scaling rows of ``run.py``).

Genes: the 53 CTRA genes (``resources/gene_sets/ctra53.tsv``), the 8 leukocyte markers and
synthetic ``SYNnnnnn`` genes. Counts are negative binomial around log-normal gene means (median
~20 normalized counts; CTRA genes 80-4,000, markers 500-20,000, five CTRA genes barely expressed as
in real blood), with genewise dispersions scattered (log-normal, SD 0.5) around
``0.04 + 1.2 / mean``, participant x gene and draw x gene log-normal variation, a shared
participant/draw CTRA factor, library sizes varying +-25 % and a CTRA effect in one arm at
``post`` (ideas from :mod:`ctra.example`). Generated in blocks of genes so that the biobank table
never needs a dense float matrix in memory.

Each scale gets a directory ``benchmarks/data/<scale>/`` holding ``counts.tsv.gz``,
``samples.tsv`` and ``config/config.yaml`` (a study named after the scale), so that
``snakemake -s Snakefile -d benchmarks/data/<scale> --cores 2`` runs the workflow on it.

    python benchmarks/make_cohort.py                 # trial, trial2, trial4 and biobank
    python benchmarks/make_cohort.py --scale trial   # only the trial-scale cohort
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ctra.example import ARMS, LOW_EXPRESSED, TIMES, TREATED_ARM  # noqa: E402
from ctra.genesets import load_gene_set  # noqa: E402

DATA = REPO / "benchmarks" / "data"
N_GENES = 20_000
SCALES = {"trial": 182, "trial2": 364, "trial4": 728, "biobank": 5000}
SEED = 20261122
GENE_BLOCK = 1000
EFFECT_LOG2 = 0.30
SD_PARTICIPANT_GENE = 0.20
SD_DRAW_GENE = 0.15
SD_CTRA_FACTOR = 0.30
SD_DRAW_FACTOR = 0.15
DISPERSION_SCATTER = 0.5


def gene_table() -> pd.DataFrame:
    """CTRA genes, markers, then synthetic genes; ``kind`` says which mean distribution applies."""
    gene_set = load_gene_set(REPO / "resources" / "gene_sets" / "ctra53.tsv")
    markers = load_gene_set(REPO / "resources" / "gene_sets" / "leukocyte_markers.tsv", allowed_groups=("marker",))
    named = pd.concat(
        [
            gene_set[["gene", "group", "direction"]].assign(direction=lambda t: t["direction"].astype(int)),
            markers[["gene", "group"]].assign(direction=0),
        ],
        ignore_index=True,
    )
    other = pd.DataFrame(
        {"gene": [f"SYN{i:06d}" for i in range(1, N_GENES - len(named) + 1)], "group": "", "direction": 0}
    )
    return pd.concat([named, other], ignore_index=True)


def sample_sheet(n_participants: int, rng: np.random.Generator) -> pd.DataFrame:
    participants = [f"P{i:05d}" for i in range(1, n_participants + 1)]
    arms = np.resize(np.array(ARMS), n_participants)
    rng.shuffle(arms)
    people = pd.DataFrame(
        {
            "participant": participants,
            "arm": arms,
            "age": rng.integers(22, 71, n_participants),
            "sex": rng.choice(["F", "M"], n_participants),
            "bmi": np.round(rng.normal(26, 4, n_participants), 1),
        }
    )
    sheet = people.loc[people.index.repeat(len(TIMES))].reset_index(drop=True)
    sheet["time"] = np.tile(TIMES, n_participants)
    sheet["sample"] = sheet["participant"] + "_" + sheet["time"]
    return sheet[["sample", "participant", "arm", "time", "age", "sex", "bmi"]]


def gene_means(genes: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    means = np.exp(rng.normal(3.0, 2.3, len(genes)))
    in_set = genes["group"].isin(["inflammatory", "antiviral", "antibody"]).to_numpy()
    means[in_set] = np.exp(rng.uniform(np.log(80), np.log(4000), in_set.sum()))
    marker = (genes["group"] == "marker").to_numpy()
    means[marker] = np.exp(rng.uniform(np.log(500), np.log(20000), marker.sum()))
    means[genes["gene"].isin(LOW_EXPRESSED).to_numpy()] = 0.08
    return means


def simulate_blocks(n_participants: int, seed: int):
    """Yield (sheet, None) once, then (gene names, counts genes x samples int64) per block of genes."""
    rng = np.random.default_rng(seed)
    genes = gene_table()
    sheet = sample_sheet(n_participants, rng)
    yield sheet, None
    n_samples = len(sheet)
    person = pd.factorize(sheet["participant"])[0]
    means = gene_means(genes, rng)
    dispersion = (0.04 + 1.2 / np.maximum(means, 1)) * np.exp(rng.normal(0, DISPERSION_SCATTER, len(genes)))
    direction = genes["direction"].to_numpy(float)
    in_set = genes["group"].isin(["inflammatory", "antiviral", "antibody"]).to_numpy()
    post = (sheet["time"] == "post").to_numpy(float)
    treated = post * (sheet["arm"] == TREATED_ARM).to_numpy(float)
    state = (
        rng.normal(0, SD_CTRA_FACTOR, n_participants)[person]
        + rng.normal(0, SD_DRAW_FACTOR, n_samples)
        + 0.006 * (sheet["age"].to_numpy(float) - 45)
        - EFFECT_LOG2 * treated
    )
    log_library = rng.normal(0, 0.25, n_samples)
    for start in range(0, len(genes), GENE_BLOCK):
        block = slice(start, min(start + GENE_BLOCK, len(genes)))
        n_block = block.stop - block.start
        log2_mu = (
            np.log2(means[block])[None, :]
            + rng.normal(0, SD_PARTICIPANT_GENE, (n_participants, n_block))[person]
            + rng.normal(0, SD_DRAW_GENE, (n_samples, n_block))
            + np.outer(state, direction[block])
            + np.outer(post, 0.1 * in_set[block])
        )
        mu = np.exp2(log2_mu + log_library[:, None] / np.log(2))
        alpha = dispersion[block][None, :]
        counts = rng.negative_binomial(1 / alpha, 1 / (1 + alpha * mu))
        yield genes["gene"].iloc[block].tolist(), counts.T


def write_cohort(scale: str, n_participants: int, out_root: Path = DATA, seed: int = SEED) -> Path:
    """Write counts.tsv.gz, samples.tsv and config/config.yaml for one scale; returns the directory."""
    out = out_root / scale
    (out / "config").mkdir(parents=True, exist_ok=True)
    blocks = simulate_blocks(n_participants, seed)
    sheet, _ = next(blocks)
    sheet.to_csv(out / "samples.tsv", sep="\t", index=False, lineterminator="\n")
    tmp = out / ".counts.tsv.gz.tmp"
    columns = ["gene", *sheet["sample"]]
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    with gzip.GzipFile(tmp, "wb", compresslevel=1, mtime=0) as handle:
        handle.write(("\t".join(columns) + "\n").encode())
        for names, counts in blocks:
            arrays = [pa.array(names, pa.string())] + [pa.array(counts[:, j]) for j in range(counts.shape[1])]
            sink = pa.BufferOutputStream()
            pacsv.write_csv(pa.Table.from_arrays(arrays, names=columns), sink, write_options=options)
            handle.write(sink.getvalue().to_pybytes())
    tmp.replace(out / "counts.tsv.gz")
    (out / "config" / "config.yaml").write_text(
        f"# benchmark cohort '{scale}': {n_participants} participants x 2 draws x {N_GENES} genes (seed {seed})\n"
        "studies:\n"
        f"  {scale}:\n"
        "    counts: counts.tsv.gz\n"
        "    samples: samples.tsv\n"
        "    columns: {sample: sample, participant: participant, arm: arm, time: time}\n"
        "    baseline: pre\n"
        "    control: control\n"
        "    covariates: [age, sex, bmi]\n"
        "    adjust_for_cell_markers: true\n"
        "    gene_set: ctra53\n"
        "    input: counts\n"
        "    normalization: fast\n"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", action="append", choices=sorted(SCALES), help="scale(s) to write (repeatable); default all"
    )
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--force", action="store_true", help="rewrite cohorts that already exist")
    args = parser.parse_args(argv)
    for scale in args.scale or list(SCALES):
        target = args.out / scale / "counts.tsv.gz"
        if target.exists() and not args.force:
            print(f"{scale}: {target} exists (use --force to rewrite)")
            continue
        start = time.perf_counter()
        write_cohort(scale, SCALES[scale], args.out, args.seed)
        print(
            f"{scale}: {SCALES[scale]} participants x 2 draws x {N_GENES} genes -> {args.out / scale} "
            f"({target.stat().st_size / 1e6:.0f} MB gz, {time.perf_counter() - start:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
