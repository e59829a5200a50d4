"""Command line: one subcommand per workflow stage, each a thin call into the library.

Snakemake rules call these so that every stage can also be run (and debugged) by hand. Problems
with user input end the command with one message on stderr and in the log, exit status 1, and no
traceback; outputs are written to a temporary name and renamed only when complete.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from .errors import InputError

if TYPE_CHECKING:
    from .config import ReportSettings

log = logging.getLogger("ctra")
FLOAT_FORMAT = "%.10g"
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)
READ_BLOCK_BYTES = 64 << 20


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are shared like any other file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    """Tidy TSV with a fixed float format so reruns are byte-identical."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def write_h5ad(adata, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)


def read_normalized(path: str | Path, genes: Callable[[pd.DataFrame], np.ndarray] | Iterable[str] | None = None,
                    layers: tuple[str, ...] = ("vst",)):
    """``normalized.h5ad`` with only the given layers, for only some genes (``None``: all; names; or a
    function of ``var`` returning a boolean mask).

    Each later stage needs a few dozen genes (the null draws: the expressed ones), and loading every
    layer of a biobank-sized file would cost gigabytes per stage. Rows are read in blocks of
    whole rows (sequential reads) and the columns picked from each block.
    """
    import anndata as ad
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        var = read_elem(handle["var"])
        if genes is None:
            columns = np.arange(len(var))
        elif callable(genes):
            columns = np.flatnonzero(np.asarray(genes(var), dtype=bool))
        else:
            columns = np.flatnonzero(var.index.isin(list(genes)))
        data = {name: _read_columns(handle["layers"][name], columns) for name in layers if name in handle["layers"]}
        return ad.AnnData(obs=read_elem(handle["obs"]), var=var.iloc[columns], uns=read_elem(handle["uns"]),
                          layers=data)


def read_var(path: str | Path) -> pd.DataFrame:
    """The gene annotation (``var``) of every gene of an ``.h5ad``, without any expression values."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        return read_elem(handle["var"])


def _read_columns(dataset, columns: np.ndarray) -> np.ndarray:
    """``dataset[:, columns]`` of a dense 2-D HDF5 dataset, read in row blocks of ``READ_BLOCK_BYTES``."""
    n_rows, n_columns = dataset.shape
    if len(columns) == n_columns:
        return dataset[()]
    out = np.empty((n_rows, len(columns)), dtype=dataset.dtype)
    step = max(1, READ_BLOCK_BYTES // max(1, dataset.dtype.itemsize * n_columns))
    for start in range(0, n_rows, step):
        out[start:start + step] = dataset[start:start + step][:, columns]
    return out


def _set_and_used_genes(usage: pd.DataFrame) -> Callable[[pd.DataFrame], np.ndarray]:
    """Genes a model stage needs: the used genes of the set and the used markers."""
    used = set(usage.loc[usage["used"].astype(bool), "gene"])
    return lambda var: var.index.isin(list(used))


TEXT_COLUMNS = ("sample", "participant", "arm", "time", "period", "gene", "group", "matched_id", "reason",
                "score", "model", "role", "contrast", "loo_participant", "note", "kind")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one of our TSVs back with ids kept as text (so '007' stays '007', '6' stays a level)."""
    return pd.read_csv(path, sep="\t", dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False, na_values=[""])


def _plain(value: object) -> object:
    """JSON fallback for numpy values that come back from .h5ad ``uns``."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _study(args: argparse.Namespace) -> dict:
    """The stage's settings as given (the validate stage reads them as a dict)."""
    return json.loads(args.study_config)


def _settings(args: argparse.Namespace, kind: type):
    """The stage's typed settings (``ctra.config``), built once from ``--study-config``."""
    return kind.from_study(_study(args))


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------

def run_validate(args: argparse.Namespace) -> None:
    from .genesets import load_gene_set
    from .validate import validate_sample_schema, validate_study

    study = _study(args)
    gene_set = load_gene_set(args.gene_set)
    markers = load_gene_set(args.markers, allowed_groups=("marker",))
    adata = validate_study(args.study, study, gene_set, markers)
    for warning in adata.uns["covariate_warnings"]:
        log.warning("%s", warning)
    if args.samples_schema:
        validate_sample_schema(adata.obs, args.samples_schema, study["samples"])
    checksums = json.loads(adata.uns["input_checksums"])
    checksums.update({args.gene_set: _sha(args.gene_set), args.markers: _sha(args.markers)})
    adata.uns["input_checksums"] = json.dumps(checksums)
    log.info("validated %d samples x %d genes (%s ids); excluded: %s; dropped for missing covariates: %s; "
             "merged rows: %s", adata.n_obs, adata.n_vars, adata.uns["id_kind"], adata.uns["excluded_samples"] or "none",
             adata.uns["dropped_incomplete"] or "none", adata.uns["merged_genes"] or "none")
    write_h5ad(adata, args.out)


def _sha(path: str) -> str:
    from .io import sha256sum

    return sha256sum(path)


def run_normalize(args: argparse.Namespace) -> None:
    import anndata as ad

    from .config import NormalizeSettings
    from .normalize import normalize
    from .scoring import gene_summaries

    settings = _settings(args, NormalizeSettings)
    adata = normalize(ad.read_h5ad(args.input), input_kind=settings.input, method=settings.normalization,
                      n_cpus=args.threads)
    rule = settings.expression_filter
    summaries = gene_summaries(adata, min_count=rule.min_count, min_fraction=rule.min_fraction)
    adata.var[summaries.columns] = summaries
    log.info("normalization: %s; %d of %d genes expressed", adata.uns["normalization"],
             int(summaries["expressed"].sum()), adata.n_vars)
    write_h5ad(adata, args.out)


def run_score(args: argparse.Namespace) -> None:
    from .config import ScoreSettings
    from .genesets import load_gene_set
    from .scoring import score_study, usage_table

    settings = _settings(args, ScoreSettings)
    genes = pd.concat([load_gene_set(args.gene_set), load_gene_set(args.markers, allowed_groups=("marker",))],
                      ignore_index=True)
    genes = genes.drop_duplicates("gene")
    adata = read_normalized(args.input, genes["gene"], layers=("vst", "counts"))
    rule = settings.expression_filter
    usage = usage_table(adata, genes, min_count=rule.min_count, min_fraction=rule.min_fraction)
    used = usage[usage["used"] & (usage["group"] != "marker")]
    if len(used) == 0:
        raise InputError(f"{settings.counts}: no gene of the gene set passes the expression rule; see genes_used.tsv.")
    scores = score_study(adata, usage)
    log.info("scored %d samples with %d genes (%d of the set not used)", len(scores), len(used),
             int((~usage['used'] & (usage['group'] != 'marker')).sum()))
    write_tsv(usage, args.genes_used)
    write_tsv(scores, args.scores)


def run_model(args: argparse.Namespace) -> None:
    """Every model fit: the main mixed model (per score and per gene), the gene-level GEE and the
    sensitivity refits; the resampling checks come after, in ``robustness``."""
    from .config import ModelSettings
    from .robustness import other_models
    from .stats import fit_study

    settings = _settings(args, ModelSettings)
    adata, scores, usage = _model_inputs(args)
    contrasts, genes, model_info = fit_study(adata, scores.rename_axis("sample").reset_index(), usage, settings)
    contrasts = pd.concat([contrasts, other_models(adata, scores, usage, settings.design)], ignore_index=True)
    write_tsv(genes, args.genes)
    with atomic_path(args.model) as tmp:
        tmp.write_text(json.dumps(model_info, indent=2, sort_keys=True, default=_plain) + "\n")
    write_tsv(contrasts, args.models)


def _model_inputs(args: argparse.Namespace, pool: bool = False) -> tuple:
    """normalized AnnData (the used genes and markers; with ``pool``, also every expressed gene, for
    random gene sets), scores in its sample order, and genes_used."""
    usage = read_table(args.genes_used)
    needed = _set_and_used_genes(usage)
    adata = read_normalized(args.input, (lambda var: needed(var) | var["expressed"].to_numpy(bool)) if pool else needed)
    scores = read_table(args.scores).set_index("sample").loc[adata.obs_names]
    return adata, scores, usage


def run_null(args: argparse.Namespace) -> None:
    from .config import NullSettings
    from .robustness import null_draws

    adata, scores, usage = _model_inputs(args, pool=True)
    draws = null_draws(adata, scores, usage, _settings(args, NullSettings), args.chunk)
    write_tsv(draws, args.out)


def run_robustness(args: argparse.Namespace) -> None:
    from .config import RobustnessSettings
    from .endpoints import mark_endpoints
    from .robustness import robustness_table

    settings = _settings(args, RobustnessSettings)
    adata, scores, usage = _model_inputs(args)
    model_info = json.loads(Path(args.model).read_text())
    nulls = pd.concat([read_table(path) for path in args.nulls], ignore_index=True)
    table = robustness_table(adata, scores, usage, settings, read_table(args.models), model_info["relative_variances"],
                             nulls, var=read_var(args.input))
    table = mark_endpoints(table, model_info["primary"])
    log.info("contrasts: %d rows over models %s", len(table), sorted(set(table["model"])))
    write_tsv(table, args.contrasts)


def run_report(args: argparse.Namespace) -> None:
    from .config import ReportSettings
    from .report import PCA_GENES, write_report
    from .versions import package_versions

    settings = _settings(args, ReportSettings)
    used = _set_and_used_genes(read_table(args.genes_used))
    adata = read_normalized(args.input, lambda var: used(var) | _most_variable(var, PCA_GENES))
    model_info = json.loads(Path(args.model).read_text())
    methods = {**model_info, "normalization": normalization_text(model_info["normalization"], settings),
               "parameters": _parameters(settings), "package_versions": package_versions(),
               "input_checksums": {Path(k).name: v for k, v in json.loads(adata.uns["input_checksums"]).items()},
               "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    write_report(args.out, study=args.study, adata=adata, scores=read_table(args.scores),
                 contrasts=read_table(args.contrasts), genes=read_table(args.genes),
                 genes_used=read_table(args.genes_used), methods=methods,
                 show_participant_ids=settings.show_participant_ids)


def _most_variable(var: pd.DataFrame, n: int) -> np.ndarray:
    """Mask of the ``n`` genes with the largest VST variance (ties by position), for the report's PCA."""
    order = np.argsort(-var["vst_var"].to_numpy(float), kind="stable")
    mask = np.zeros(len(var), dtype=bool)
    mask[order[:n]] = True
    return mask


def normalization_text(info: dict, settings: ReportSettings) -> str:
    """The normalization and scoring paragraph of the methods, from what was actually run."""
    rule = settings.expression_filter
    scoring = (f" A gene of the set was used if its normalized count was at least {rule.min_count:g} in at least "
               f"{rule.min_fraction:.0%} of samples and its VST was not constant. Each used gene's VST was z-scored "
               "over all samples of the study (ddof = 1); the CTRA score is the mean of the direction-signed "
               "z-scores (pro-inflammatory +1, antiviral and antibody -1) and each subscore the unsigned mean z "
               "of its group.")
    if settings.input == "log2_expression":
        return "The input was already log2-scale expression and was used as given (no DESeq2 normalization)." + scoring
    trend = (f"a parametric dispersion trend (asymptotic dispersion {info['a0_asymptotic_dispersion']:.4g}, "
             f"extra-Poisson {info['a1_extra_poisson']:.4g})")
    if info.get("method") == "vst_subset":
        how = (f"fitted on {info['trend_genes']} genes chosen evenly over the mean ranks of genes with mean "
               "normalized count above 5, as R DESeq2's vst() does, and applied to all genes")
    else:
        engine = ("PyDESeq2's own DeseqDataSet" if info.get("method") == "pydeseq2" else
                  "ctra's vectorized implementation of PyDESeq2's genewise dispersion and trend routines")
        how = (f"fitted on all {info['trend_genes']} non-zero genes above the dispersion floor (PyDESeq2's full "
               f"vst, R's varianceStabilizingTransformation) by {engine}")
    return ("Size factors: DESeq2 median of ratios (PyDESeq2). Expression: blind variance-stabilizing "
            f"transformation (log2 scale) with {trend}, {how}." + scoring)


def _parameters(settings: ReportSettings) -> dict[str, str]:
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in settings.parameters.items()}


def run_example(args: argparse.Namespace) -> None:
    from .example import write_example

    write_example(args.out, seed=args.seed)


# ----------------------------------------------------------------------------------------------
# Plumbing
# ----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    option_help = {
        "study": "study name (its key under `studies:` in the config)",
        "study-config": "the study settings this stage reads, as JSON (ctra.config.STAGE_KEYS; the workflow passes them)",
        "gene-set": "gene set TSV (gene, group, direction, ...), e.g. resources/gene_sets/ctra53.tsv",
        "markers": "leukocyte marker set TSV, e.g. resources/gene_sets/leukocyte_markers.tsv",
        "samples-schema": "also check the sample sheet against this YAML schema (workflow/schemas/samples.schema.yaml)",
        "input": "the previous stage's .h5ad (validated.h5ad for normalize, else normalized.h5ad)",
        "scores": "scores.tsv (written by score, read by the later stages)",
        "genes-used": "genes_used.tsv (written by score, read by the later stages)",
        "models": "work/model_contrasts.tsv: every model's contrasts before the resampling checks (model writes it)",
        "genes": "per-gene contrasts TSV to write (genes.tsv)",
        "model": "model.json: formula, reference levels, variance components (model writes it, the others read it)",
        "contrasts": "contrasts.tsv to write, with the robustness columns",
        "out": "the file to write (validated.h5ad, normalized.h5ad, a null chunk's TSV or report.html)",
    }
    parser = argparse.ArgumentParser(
        prog="ctra", description=__doc__.splitlines()[0],
        epilog="Each stage reads and writes the files the workflow's rule of the same name does; `snakemake -n -p` "
               "prints the exact commands. `ctra <command> --help` lists a command's options.")
    sub = parser.add_subparsers(dest="command", required=True)

    def stage(name: str, func: Callable, summary: str, *options: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=summary)
        p.set_defaults(func=func)
        p.add_argument("--log", help="also write messages to this file")
        for option in options:
            p.add_argument(f"--{option}", required=option not in ("samples-schema", "threads"),
                           help=option_help[option])
        return p

    stage("validate", run_validate, "check the count table, sample sheet and study config; write validated.h5ad",
          "study", "study-config", "gene-set", "markers", "samples-schema", "out")
    stage("normalize", run_normalize, "size factors and blind VST; write normalized.h5ad",
          "study-config", "input", "out").add_argument(
        "--threads", type=int, default=1, help="threads for normalization (default 1)")
    stage("score", run_score, "CTRA score and subscores per sample; write scores.tsv and genes_used.tsv",
          "study-config", "input", "gene-set", "markers", "scores", "genes-used")
    stage("model", run_model, "fit the mixed models, gene-level GEE and sensitivity refits",
          "study-config", "input", "scores", "genes-used", "models", "genes", "model")
    stage("null", run_null, "one chunk of the permutation and random-gene-set null draws",
          "study-config", "input", "scores", "genes-used", "out").add_argument(
        "--chunk", type=int, default=0, help="which chunk of the draws (0 to robustness: chunks - 1; default 0)")
    stage("robustness", run_robustness, "turn the null draws into p-values, add leave-one-out; write contrasts.tsv",
          "study-config", "input", "scores", "genes-used", "model", "models", "contrasts").add_argument(
        "--nulls", nargs="+", required=True, help="every chunk's null draws (the null command's outputs)")
    stage("report", run_report, "write the self-contained HTML report",
          "study", "study-config", "input", "scores", "genes-used", "contrasts", "genes", "model", "out")
    example = sub.add_parser("example", help="write the bundled example cohort",
                             description="write the bundled example cohort (counts.tsv.gz, samples.tsv, truth.tsv)")
    example.set_defaults(func=run_example)
    example.add_argument("--out", default="resources/example", help="directory to write to (default %(default)s)")
    example.add_argument("--seed", type=int, default=20261122, help="random seed (default %(default)s)")
    return parser


def _setup_logging(log_path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="ctra %(levelname)s: %(message)s", handlers=handlers, force=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(getattr(args, "log", None))
    try:
        args.func(args)
    except InputError as err:
        log.error("%s", err)
        return 1
    except Exception as err:  # a bug of ours: short message on the terminal, traceback in the log
        if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:  # disk full, read-only: the user's to fix
            log.error("ctra %s could not write %s: %s; free space or fix permissions under results/ and rerun.",
                      args.command, err.filename or "its outputs", os.strerror(err.errno))
            return 1
        log.error("internal error in 'ctra %s': %s: %s%s", args.command, type(err).__name__, err,
                  f" (traceback in {args.log})" if getattr(args, "log", None) else "")
        if getattr(args, "log", None):
            with open(args.log, "a") as handle:
                traceback.print_exc(file=handle)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
