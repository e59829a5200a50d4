"""Performance benchmark of ctra: normalization vs PyDESeq2, reading, the whole workflow, scaling.

    python benchmarks/run.py            # everything (trial, 2x, 4x and biobank scale; ~15 min)
    python benchmarks/run.py --quick    # without the biobank-scale cohort

Cohorts are generated on first use by ``benchmarks/make_cohort.py`` into ``benchmarks/data/``
(gitignored). Every measurement that loads a matrix runs in a child process so that its peak RSS
is its own. Whole-workflow runs start from an empty ``results/`` and are watched by polling the
process tree with psutil every 0.1 s (sum of RSS of all processes; per stage, the stage's
``ctra.cli`` process and its children); with GNU time available, its maximum single-process RSS
is printed too. Prints numbers and ratios only; nothing here asserts a time. A JSON copy of the
results goes to ``benchmarks/data/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
DATA = BENCH / "data"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "src"))

GNU_TIME = "/usr/bin/time"
POLL_SECONDS = 0.1
VST_TOLERANCE = 0.05


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


def current_rss_gb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


# ----------------------------------------------------------------------------------------------
# Child-process measurements (``run.py _child <what> ...``), each printing one JSON line
# ----------------------------------------------------------------------------------------------


class RssWatcher:
    """Samples this process's RSS every 20 ms in a thread; ``peak_gb`` is the largest seen."""

    def __init__(self) -> None:
        import threading

        self.peak_gb = current_rss_gb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_gb = max(self.peak_gb, current_rss_gb())

    def __enter__(self) -> "RssWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_gb = max(self.peak_gb, current_rss_gb())


def _load_adata(counts_path: Path):
    """Samples x genes AnnData of the table (float64 X, as validate builds it), cached as .npy."""
    import anndata as ad

    cache = DATA / "scratch" / f"{counts_path.parent.name}_counts.npy"
    names = cache.with_suffix(".names.npz")
    if not cache.exists():
        from ctra.io import read_count_table

        table = read_count_table(counts_path)
        np.save(cache, table.values)
        np.savez(names, samples=np.asarray(table.samples, dtype=str), genes=table.genes.astype(str))
        del table
    labels = np.load(names)
    adata = ad.AnnData(X=np.load(cache))
    adata.obs_names, adata.var_names = labels["samples"], labels["genes"]
    return adata


def pydeseq2_vst(adata, threads: int):
    """PyDESeq2's own full blind VST, ``DeseqDataSet(design='~1').vst(use_design=False)``, as an
    AnnData with ctra's output names (layers vst and counts, obs size_factor, uns normalization)."""
    import contextlib
    import io
    import warnings

    import pandas as pd
    from pydeseq2.dds import DeseqDataSet

    frame = pd.DataFrame(adata.X.astype(np.int64), index=adata.obs_names, columns=adata.var_names)
    dds = DeseqDataSet(
        counts=frame,
        metadata=pd.DataFrame({"all": "all"}, index=adata.obs_names),
        design="~1",
        n_cpus=threads,
        quiet=True,
    )
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        dds.vst(use_design=False, fit_type="parametric")
    a0, a1 = dds.uns["vst_trend_coeffs"]
    out = adata.copy()
    out.layers["counts"], out.layers["vst"] = adata.X, np.asarray(dds.layers["vst_counts"])
    out.obs["size_factor"] = dds.obs["size_factors"].to_numpy()
    out.uns["normalization"] = {
        "method": "PyDESeq2 DeseqDataSet.vst",
        "trend": dds.vst_fit_type,
        "a0_asymptotic_dispersion": float(a0),
        "a1_extra_poisson": float(a1),
    }
    return out


def child_normalize(counts_path: Path, method: str, threads: int, save: Path | None) -> dict:
    """Time ctra.normalize.normalize() (``method`` fast or pydeseq2) or PyDESeq2's own vst
    (``method`` pydeseq2-vst). The import of PyDESeq2, which only the PyDESeq2 methods need, is timed
    apart (``import_seconds``; 0 for fast, which does not import it), and one untimed warm-up call on
    a small table comes first, so that ``seconds`` is the work on this table and ``seconds +
    import_seconds`` what a fresh workflow stage pays beyond the imports every stage has."""
    import anndata as ad

    from ctra.normalize import normalize, normalized_means

    start = time.perf_counter()
    if method != "fast":
        import pydeseq2.dds  # noqa: F401

    import_seconds = time.perf_counter() - start
    run = (
        (lambda data: pydeseq2_vst(data, threads))
        if method == "pydeseq2-vst"
        else (lambda data: normalize(data, input_kind="counts", method=method, n_cpus=threads))
    )
    rng = np.random.default_rng(0)
    small = rng.negative_binomial(5, 5 / (5 + rng.lognormal(3, 1.5, 3000)), (24, 3000)).astype(np.float64)
    run(ad.AnnData(X=small[:, small.sum(axis=0) > 0]))
    adata = _load_adata(counts_path)
    baseline = current_rss_gb()
    with RssWatcher() as watcher:
        start = time.perf_counter()
        out = run(adata)
        seconds = time.perf_counter() - start
    if save is not None:
        np.save(save, out.layers["vst"].astype(np.float32))
        np.save(save.with_suffix(".genes.npy"), out.var_names.to_numpy(dtype=str))
        np.save(save.with_suffix(".sf.npy"), out.obs["size_factor"].to_numpy())
        np.save(
            save.with_suffix(".mean.npy"), normalized_means(out.layers["counts"], out.obs["size_factor"].to_numpy())
        )
    info = {
        k: (float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in out.uns["normalization"].items()
    }
    return {
        "seconds": seconds,
        "import_seconds": import_seconds,
        "rss_before_gb": baseline,
        "peak_rss_gb": watcher.peak_gb,
        "matrix_gb": adata.X.nbytes / 1024**3,
        "shape": list(adata.shape),
        "info": info,
    }


def child_read(counts_path: Path, with_pandas: bool, repeats: int = 3) -> dict:
    """ctra.io.read_counts (pyarrow) vs pandas.read_csv on the same file; after one untimed read
    of each (page cache, lazy imports), ``repeats`` alternating rounds; the best time of each."""
    import pandas as pd

    from ctra.io import read_counts

    readers = {"ctra": lambda: read_counts(counts_path)}
    if with_pandas:
        readers["pandas"] = lambda: pd.read_csv(counts_path, sep="\t", index_col=0)
    else:
        repeats = 1
    times: dict[str, list[float]] = {name: [] for name in readers}
    shape = None
    for round_ in range(repeats + (1 if with_pandas else 0)):
        for name, reader in readers.items():
            start = time.perf_counter()
            frame = reader()
            elapsed = time.perf_counter() - start
            shape = list(frame.shape)
            del frame
            if round_ > 0 or not with_pandas:
                times[name].append(elapsed)
    result = {f"{name}_seconds": min(values) for name, values in times.items()}
    result.update({"peak_rss_gb": peak_rss_gb(), "shape": shape, "repeats": repeats})
    return result


def child_r_vst(counts_path: Path, save: Path) -> dict | None:
    """R DESeq2's vst(blind = TRUE, nsub = 1000) on the same table (time of the vst() call only)."""
    script = save.with_suffix(".R")
    script.write_text(R_VST_SCRIPT)
    done = subprocess.run(["Rscript", str(script), str(counts_path), str(save)], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    found = re.search(r"R_VST_SECONDS ([0-9.]+)", done.stdout)
    coefs = re.search(r"R_COEFS ([0-9.eE+-]+) ([0-9.eE+-]+)", done.stdout)
    full = re.search(r"R_FULL_SECONDS ([0-9.]+)", done.stdout)
    return {
        "seconds": float(found.group(1)),
        "a0": float(coefs.group(1)),
        "a1": float(coefs.group(2)),
        "full_seconds": float(full.group(1)),
    }


R_VST_SCRIPT = r"""
suppressMessages(library(DESeq2))
args <- commandArgs(trailingOnly = TRUE)
counts <- as.matrix(read.delim(gzfile(args[1]), row.names = 1, check.names = FALSE))
storage.mode(counts) <- "integer"
dds <- DESeqDataSetFromMatrix(counts, data.frame(row.names = colnames(counts), x = rep(1, ncol(counts))), ~1)
t0 <- proc.time()[["elapsed"]]
vsd <- vst(dds, blind = TRUE, nsub = 1000, fitType = "parametric")
cat("R_VST_SECONDS", proc.time()[["elapsed"]] - t0, "\n")
dds <- estimateSizeFactors(dds)
base_mean <- rowMeans(counts(dds, normalized = TRUE))
sub <- dds[base_mean > 5, ]
o <- order(base_mean[base_mean > 5])
sub <- estimateDispersionsFit(estimateDispersionsGeneEst(sub[o[round(seq(1, length(o), length = 1000))], ],
                              quiet = TRUE), fitType = "parametric", quiet = TRUE)
cat("R_COEFS", attr(dispersionFunction(sub), "coefficients"), "\n")
con <- file(args[2], "wb"); writeBin(as.vector(t(assay(vsd))), con); close(con)
t0 <- proc.time()[["elapsed"]]
full <- varianceStabilizingTransformation(dds, blind = TRUE, fitType = "parametric")
cat("R_FULL_SECONDS", proc.time()[["elapsed"]] - t0, "\n")
con <- file(paste0(args[2], ".full"), "wb"); writeBin(as.vector(t(assay(full))), con); close(con)
"""


def r_deseq2_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    return subprocess.run(["Rscript", "-e", "suppressMessages(library(DESeq2))"], capture_output=True).returncode == 0


def run_child(*args: str) -> dict:
    """Run this script as ``_child ...`` and return the JSON it prints last."""
    command = [sys.executable, str(Path(__file__).resolve()), "_child", *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# Whole workflow, watched with psutil
# ----------------------------------------------------------------------------------------------

STAGE_PATTERN = re.compile(r"ctra\.cli\s+(\w+)")


def run_workflow(
    workdir: Path, cores: int, target: str | None, timeout: float | None = None, repo: Path = REPO
) -> dict:
    """Fresh snakemake run in ``workdir``; wall time, peak tree RSS, per-stage span and peak RSS.

    After ``timeout`` seconds the run is stopped (its process tree killed) and reported as such,
    with the stages seen so far; the stage running at that moment is the one marked ``killed``.
    ``repo``: the checkout whose Snakefile and ``src/`` run (another revision's, for a before/after).
    """
    import psutil

    shutil.rmtree(workdir / "results", ignore_errors=True)
    shutil.rmtree(workdir / ".snakemake", ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(repo / "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        str(cores),
    ] + ([target] if target else [])
    use_time = Path(GNU_TIME).exists()
    if use_time:
        command = [GNU_TIME, "-v", *command]
    log_path = workdir / "benchmark_snakemake.log"
    stages: dict[str, dict] = {}
    peak_total = 0.0
    start = time.perf_counter()
    with open(log_path, "w") as log:
        # the checkout's own library first (an editable install points at this one's)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "src"), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=repo, env=env)
        root = psutil.Process(proc.pid)
        timed_out = False
        while proc.poll() is None:
            now = time.perf_counter() - start
            if timeout is not None and now > timeout:
                timed_out = True
                for item in [*root.children(recursive=True), root]:
                    with contextlib.suppress(psutil.Error):
                        item.kill()
                proc.wait()
                break
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            total = 0.0
            per_pid: dict[int, float] = {}
            stage_of: dict[int, str] = {}
            for item in tree:
                try:
                    rss = item.memory_info().rss / 1024**3
                    cmdline = " ".join(item.cmdline())
                except psutil.Error:
                    continue
                total += rss
                per_pid[item.pid] = rss
                found = STAGE_PATTERN.search(cmdline)
                if found and item.name().startswith("python"):
                    stage_of[item.pid] = found.group(1)
            peak_total = max(peak_total, total)
            for pid, stage in stage_of.items():
                try:
                    family = [pid, *[c.pid for c in psutil.Process(pid).children(recursive=True)]]
                except psutil.Error:
                    family = [pid]
                rss = sum(per_pid.get(p, 0.0) for p in family)
                record = stages.setdefault(stage, {"first": now, "last": now, "peak_rss_gb": 0.0})
                record["last"] = now
                record["peak_rss_gb"] = max(record["peak_rss_gb"], rss)
            time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - start
    text = log_path.read_text(errors="replace")
    largest = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    last_stage = max(stages, key=lambda k: stages[k]["last"]) if stages else None
    for name, record in stages.items():
        record["seconds"] = record.pop("last") - record["first"] + POLL_SECONDS
        record["killed"] = timed_out and name == last_stage
    return {
        "ok": proc.returncode == 0 and not timed_out,
        "timed_out": timed_out,
        "wall_seconds": wall,
        "peak_tree_rss_gb": peak_total,
        "largest_process_rss_gb": int(largest.group(1)) / 1024**2 if largest else None,
        "stages": dict(sorted(stages.items(), key=lambda kv: kv[1]["first"])),
        "log": str(log_path),
        "target": target or "all (report.html)",
    }


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def ensure_cohort(scale: str) -> Path:
    from make_cohort import SCALES, write_cohort

    directory = DATA / scale
    if not (directory / "counts.tsv.gz").exists():
        print(f"generating the {scale} cohort ...", flush=True)
        write_cohort(scale, SCALES[scale])
    return directory


def plain_copy(gz_path: Path) -> Path:
    import gzip

    plain = gz_path.with_suffix("")
    if not plain.exists():
        with gzip.open(gz_path, "rb") as src, open(plain, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
    return plain


def vst_comparison(fast: Path, reference: np.ndarray, values: np.ndarray | None = None) -> dict:
    """Max |fast - reference| on CTRA + marker genes and over all genes; the worst genes with their means.

    ``fast`` names the saved ctra VST (and its gene names and means); ``values``, when given, is
    compared instead of it (same genes and samples)."""
    import pandas as pd

    from ctra.genesets import load_gene_set

    scratch = fast.parent
    genes = np.load(scratch / "vst_fast.genes.npy")
    means = np.load(scratch / "vst_fast.mean.npy")
    values = np.load(fast).astype(np.float64) if values is None else values
    diff = np.abs(values - reference).max(axis=0)
    gene_sets = REPO / "resources" / "gene_sets"
    named = pd.concat(
        [
            load_gene_set(gene_sets / "ctra53.tsv"),
            load_gene_set(gene_sets / "leukocyte_markers.tsv", allowed_groups=("marker",)),
        ]
    )
    in_sets = np.isin(genes, named["gene"].to_numpy())
    expressed = in_sets & (means > 1)

    def listing(index: np.ndarray) -> list[dict]:
        return [
            {
                "gene": str(genes[j]),
                "max_abs_diff": round(float(diff[j]), 4),
                "mean_normalized_count": round(float(means[j]), 2),
            }
            for j in index
        ]

    over = np.flatnonzero(diff > VST_TOLERANCE)
    return {
        "max_abs_ctra_markers": float(diff[in_sets].max()),
        "n_ctra_marker_genes": int(in_sets.sum()),
        "max_abs_ctra_markers_expressed": float(diff[expressed].max()),
        "n_expressed": int(expressed.sum()),
        "max_abs_all": float(diff.max()),
        "genes_over_tolerance": int(over.size),
        "max_mean_of_genes_over_tolerance": float(means[over].max()) if over.size else None,
        "max_abs_genes_mean_over_50": float(diff[means > 50].max()),
        "worst_all": listing(np.argsort(diff)[::-1][:5]),
        "worst_ctra_markers": listing(np.flatnonzero(in_sets)[np.argsort(diff[in_sets])[::-1][:6]]),
    }


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_child":
        what, rest = argv[1], argv[2:]
        if what == "normalize":
            result = child_normalize(Path(rest[0]), rest[1], int(rest[2]), Path(rest[3]) if len(rest) > 3 else None)
        elif what == "read":
            result = child_read(Path(rest[0]), rest[1] == "pandas")
        elif what == "r_vst":
            result = child_r_vst(Path(rest[0]), Path(rest[1]))
        else:
            raise SystemExit(f"unknown child measurement {what}")
        print(json.dumps(result))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the biobank-scale cohort (10,000 samples)")
    parser.add_argument("--threads", type=int, default=2, help="cores for normalization and snakemake (default 2)")
    parser.add_argument("--no-pydeseq2", action="store_true", help="skip PyDESeq2's full vst (~1-2 min)")
    parser.add_argument("--no-r", action="store_true", help="skip R DESeq2's vst() (used when Rscript + DESeq2 exist)")
    parser.add_argument(
        "--workflow-timeout",
        type=float,
        default=3600,
        help="stop a whole-workflow run after this many seconds and report the stage it was in",
    )
    parser.add_argument(
        "--no-workflow-scaling",
        action="store_true",
        help="time the whole workflow at 1x only, not at 2x and 4x the samples",
    )
    args = parser.parse_args(argv)

    results: dict = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "load_average": {"start": os.getloadavg()[0]},
    }
    scales = ["trial", "trial2", "trial4"] + ([] if args.quick else ["biobank"])
    dirs = {scale: ensure_cohort(scale) for scale in scales}
    scratch = DATA / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    trial_counts = dirs["trial"] / "counts.tsv.gz"

    def save(key: str, value: dict) -> None:
        results[key] = value
        results["load_average"][key] = os.getloadavg()[0]
        (DATA / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        print(f"{key}: {json.dumps(value)}", flush=True)

    print("== normalization at trial scale (364 samples x 20,000 genes)", flush=True)
    save(
        "normalize_fast_trial",
        run_child("normalize", str(trial_counts), "fast", str(args.threads), str(scratch / "vst_fast.npy")),
    )
    n_samples, n_genes = results["normalize_fast_trial"]["shape"]
    if not args.no_pydeseq2:
        save(
            "normalize_pydeseq2_trial",
            run_child("normalize", str(trial_counts), "pydeseq2-vst", str(args.threads), str(scratch / "vst_full.npy")),
        )
        save(
            "vst_vs_pydeseq2",
            vst_comparison(scratch / "vst_fast.npy", np.load(scratch / "vst_full.npy").astype(np.float64)),
        )
    if not args.no_r and r_deseq2_available():
        r_result = run_child("r_vst", str(trial_counts), str(scratch / "vst_r.bin"))
        if r_result:
            save("r_vst_trial", r_result)
            r_vst = np.fromfile(scratch / "vst_r.bin").reshape(n_genes, n_samples).T
            save("vst_vs_r", vst_comparison(scratch / "vst_fast.npy", r_vst))
            # R's own vst() vs varianceStabilizingTransformation(): the difference ctra fast vs
            # PyDESeq2 full should reproduce (same cause: trend on 1,000 genes vs on all genes)
            r_full = np.fromfile(scratch / "vst_r.bin.full").reshape(n_genes, n_samples).T
            save("r_vst_vs_r_full", vst_comparison(scratch / "vst_r.bin", r_full, r_vst))
            if "vst_vs_pydeseq2" in results:
                ours = np.load(scratch / "vst_fast.npy").astype(np.float64) - np.load(scratch / "vst_full.npy")
                results["r_vst_vs_r_full"]["max_abs_difference_of_differences"] = float(
                    np.abs(ours - (r_vst - r_full)).max()
                )

    print("== reading the trial-scale table", flush=True)
    for label, path in (("gz", trial_counts), ("plain", plain_copy(trial_counts))):
        save(f"read_trial_{label}", run_child("read", str(path), "pandas"))

    print("== normalization scaling (1x, 2x, 4x samples; biobank)", flush=True)
    for scale in scales[1:]:
        save(
            f"normalize_fast_{scale}",
            run_child("normalize", str(dirs[scale] / "counts.tsv.gz"), "fast", str(args.threads)),
        )
    if not args.quick:
        save("read_biobank_gz", run_child("read", str(dirs["biobank"] / "counts.tsv.gz"), "ctra-only"))

    workflow_scales = (
        ["trial"] + ([] if args.no_workflow_scaling else ["trial2", "trial4"]) + ([] if args.quick else ["biobank"])
    )
    for scale in workflow_scales:
        print(f"== whole workflow at scale {scale}", flush=True)
        save(f"workflow_{scale}", run_workflow(dirs[scale], args.threads, None, args.workflow_timeout))

    print_table(results)
    return 0


def add_linear_fit(results: dict, add) -> None:
    """Least-squares ``wall = fixed + per_sample x samples`` over the whole-workflow runs, so that
    'grows about linearly' is a measured statement: the fit, and each run's deviation from it."""
    runs = [
        (
            results[f"normalize_fast_{scale}"]["shape"][0] if f"normalize_fast_{scale}" in results else None,
            results[f"workflow_{scale}"],
        )
        for scale in ("trial", "trial2", "trial4", "biobank")
        if f"workflow_{scale}" in results and results[f"workflow_{scale}"]["ok"]
    ]
    runs = [(n, record["wall_seconds"]) for n, record in runs if n]
    if len(runs) < 3:
        return
    samples, seconds = np.array(runs, dtype=float).T
    per_sample, fixed = np.polyfit(samples, seconds, 1)
    worst = np.max(np.abs(seconds - (fixed + per_sample * samples)) / seconds)
    add(
        "whole workflow ~ fixed + per sample",
        f"{fixed:.1f} s + {1000 * per_sample:.2f} ms x n",
        f"least squares over {len(runs)} sizes; largest deviation {100 * worst:.0f} % of a run's time",
    )


def print_table(results: dict) -> None:
    rows: list[tuple[str, str, str]] = []

    def add(what: str, value: str, note: str = "") -> None:
        rows.append((what, value, note))

    fast = results["normalize_fast_trial"]
    samples = fast["shape"][0]
    add(
        f"normalize, ctra fast, trial ({samples} x {fast['shape'][1]:,})",
        f"{fast['seconds']:.2f} s",
        f"peak RSS {fast['peak_rss_gb']:.2f} GB ({fast['matrix_gb']:.2f} GB of counts)",
    )
    if "normalize_pydeseq2_trial" in results:
        full = results["normalize_pydeseq2_trial"]
        add(
            "normalize, PyDESeq2 DeseqDataSet.vst(), trial",
            f"{full['seconds']:.1f} s",
            f"peak RSS {full['peak_rss_gb']:.2f} GB",
        )
        add(
            "  + importing PyDESeq2 (once per process)",
            f"{full['import_seconds']:.2f} s",
            "ctra's fast path does not import it",
        )
        cold_fast = fast["seconds"] + fast["import_seconds"]
        cold_full = full["seconds"] + full["import_seconds"]
        add(
            "  speed-up: PyDESeq2 / ctra",
            f"{full['seconds'] / fast['seconds']:.0f}x",
            f"{cold_full / cold_fast:.0f}x with the import counted ({cold_full:.1f} / {cold_fast:.2f} s); target >= 10x",
        )
    for key, label in (
        ("vst_vs_pydeseq2", "ctra - PyDESeq2 full vst"),
        ("vst_vs_r", "ctra - R DESeq2 vst()"),
        ("r_vst_vs_r_full", "R vst() - R full VST"),
    ):
        diff = results.get(key)
        if not diff:
            continue
        if key == "vst_vs_r":
            r = results["r_vst_trial"]
            add("R DESeq2 vst(nsub = 1000), trial", f"{r['seconds']:.1f} s", "vst() call only, for reference")
        if key == "r_vst_vs_r_full":
            add(
                "R varianceStabilizingTransformation(), trial",
                f"{results['r_vst_trial']['full_seconds']:.1f} s",
                "blind, parametric: R's full VST",
            )
        add(
            f"  max |{label}|, CTRA + markers",
            f"{diff['max_abs_ctra_markers']:.4f}",
            f"{diff['n_ctra_marker_genes']} genes"
            + (f" (target < {VST_TOLERANCE})" if key == "vst_vs_pydeseq2" else ""),
        )
        add(
            "    of these, expressed (mean count > 1)",
            f"{diff['max_abs_ctra_markers_expressed']:.4f}",
            f"{diff['n_expressed']} genes",
        )
        over = diff["genes_over_tolerance"]
        add(
            "    all genes / genes with mean > 50",
            f"{diff['max_abs_all']:.4f} / {diff['max_abs_genes_mean_over_50']:.4f}",
            f"{over} genes > {VST_TOLERANCE}"
            + (f", all with mean <= {diff['max_mean_of_genes_over_tolerance']:.0f}" if over else ""),
        )
        if "max_abs_difference_of_differences" in diff:
            add(
                "    vs (ctra - PyDESeq2 full), max |difference|",
                f"{diff['max_abs_difference_of_differences']:.4f}",
                "the same gap: it comes from the trend's genes, not from ctra",
            )
    trends = [
        (name, results[key]["info"])
        for name, key in (("ctra fast", "normalize_fast_trial"), ("PyDESeq2 full", "normalize_pydeseq2_trial"))
        if key in results
    ]
    if "r_vst_trial" in results:
        trends.append(
            (
                "R vst()",
                {
                    "a0_asymptotic_dispersion": results["r_vst_trial"]["a0"],
                    "a1_extra_poisson": results["r_vst_trial"]["a1"],
                },
            )
        )
    for name, info in trends:
        a0, a1 = info["a0_asymptotic_dispersion"], info["a1_extra_poisson"]
        add(
            f"  trend {name}",
            f"a0 {a0:.4f}, a1 {a1:.3f}",
            f"VST of a zero count: log2((1 + a1) / (4 a0)) = {np.log2((1 + a1) / (4 * a0)):.3f}",
        )
    for label in ("gz", "plain"):
        read = results.get(f"read_trial_{label}")
        if read:
            add(
                f"read trial table ({label}): ctra.io / pandas",
                f"{read['ctra_seconds']:.2f} / {read['pandas_seconds']:.2f} s",
                f"pandas / ctra = {read['pandas_seconds'] / read['ctra_seconds']:.1f}x (best of {read['repeats']})",
            )
    if "read_biobank_gz" in results:
        read = results["read_biobank_gz"]
        add(
            "read biobank table (gz): ctra.io",
            f"{read['ctra_seconds']:.1f} s",
            f"peak RSS {read['peak_rss_gb']:.2f} GB",
        )
    for scale in ("trial2", "trial4", "biobank"):
        record = results.get(f"normalize_fast_{scale}")
        if record:
            factor = record["shape"][0] / samples
            add(
                f"normalize, ctra fast, {record['shape'][0]:,} samples",
                f"{record['seconds']:.2f} s",
                f"x{record['seconds'] / fast['seconds']:.1f} for x{factor:.1f} samples; peak RSS "
                f"{record['peak_rss_gb']:.2f} GB ({record['matrix_gb']:.2f} GB of counts)",
            )
    trial = results.get("workflow_trial")
    for scale in ("trial", "trial2", "trial4", "biobank"):
        record = results.get(f"workflow_{scale}")
        if not record:
            continue
        note = f"peak RSS {record['peak_tree_rss_gb']:.2f} GB (process tree)"
        if record.get("largest_process_rss_gb"):
            note += f", {record['largest_process_rss_gb']:.2f} GB largest process"
        if trial and scale != "trial":
            note += f"; x{record['wall_seconds'] / trial['wall_seconds']:.1f} of trial"
        status = "" if record["ok"] else " (STOPPED at the time limit)" if record.get("timed_out") else " (FAILED)"
        add(
            f"whole workflow, {scale}{status}",
            f"{'> ' if record.get('timed_out') else ''}{record['wall_seconds']:.0f} s",
            note,
        )
        for stage, info in record["stages"].items():
            ratio = ""
            if trial and scale != "trial" and stage in trial["stages"]:
                ratio = f"; x{info['seconds'] / trial['stages'][stage]['seconds']:.1f} of trial"
            add(
                f"  stage {stage}",
                f"{'> ' if info.get('killed') else ''}{info['seconds']:.1f} s",
                f"peak RSS {info['peak_rss_gb']:.2f} GB{ratio}{' (killed at the time limit)' if info.get('killed') else ''}",
            )
    add_linear_fit(results, add)
    width = max(len(r[0]) for r in rows) + 2
    vwidth = max(len(r[1]) for r in rows) + 2
    loads = results["load_average"]
    print()
    print(
        f"ctra benchmark {results['date']}: {results['cpus']} cores, {results['mem_gib']} GiB, Python {results['python']}; "
        f"1-min load average {min(loads.values()):.1f}-{max(loads.values()):.1f} during the run"
    )
    for what, value, note in rows:
        print(f"{what:<{width}}{value:>{vwidth}}   {note}")


if __name__ == "__main__":
    sys.exit(main())
