"""Median-of-ratios size factors and the blind variance-stabilizing transform, via PyDESeq2.

Two VST paths, both blind (intercept-only design) and parametric, as DESeq2 does:

* ``fast`` (default) follows R DESeq2's ``vst()``: the dispersion trend is fitted with PyDESeq2's
  own genewise-dispersion and trend routines on ``nsub`` = 1,000 genes chosen evenly over the mean
  ranks of genes with mean normalized count > 5, then the closed-form transform is applied to every
  gene. Cost grows with samples, not genes.
* ``pydeseq2`` runs PyDESeq2's full ``DeseqDataSet.vst(use_design=False)`` (dispersions for all
  genes; R's ``varianceStabilizingTransformation(blind=TRUE)``).

With ``input: log2_expression`` no normalization is done: the given values are the VST layer.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import anndata as ad
import numpy as np
import pandas as pd
from pydeseq2.dds import DeseqDataSet
from pydeseq2.preprocessing import deseq2_norm_fit, deseq2_norm_transform

from .errors import InputError

NSUB = 1000
MIN_BASEMEAN_FOR_TREND = 5.0


def size_factors(counts: np.ndarray) -> np.ndarray:
    """DESeq2 median-of-ratios size factors (samples x genes input), via PyDESeq2.

    Like R's ``estimateSizeFactors``, only genes with no zero count enter the geometric means; a
    table where every gene has a zero somewhere is refused rather than normalized differently.
    """
    logmeans, usable = deseq2_norm_fit(counts)
    if not usable.any():
        raise InputError("every gene has a zero count in at least one sample, so median-of-ratios size "
                         "factors are undefined; check for an empty or failed library.")
    _, factors = deseq2_norm_transform(counts, logmeans, usable)
    return np.asarray(factors, dtype=np.float64)


def trend_subset(base_mean: np.ndarray, nsub: int = NSUB) -> np.ndarray:
    """Indices of genes for the dispersion trend, chosen as DESeq2 ``vst()`` does.

    Among genes with mean normalized count > 5, take ``nsub`` evenly spaced mean ranks
    (``o[round(seq(1, n, length = nsub))]`` in R); with fewer such genes, take them all.
    """
    eligible = np.flatnonzero(base_mean > MIN_BASEMEAN_FOR_TREND)
    if len(eligible) <= nsub:
        return eligible
    order = eligible[np.argsort(base_mean[eligible], kind="stable")]
    positions = np.round(np.linspace(1, len(order), nsub)).astype(int) - 1
    return order[positions]


def _quiet_dds(counts: np.ndarray, n_cpus: int) -> DeseqDataSet:
    samples = [f"s{i}" for i in range(counts.shape[0])]
    frame = pd.DataFrame(counts.astype(np.int64), index=samples, columns=[f"g{j}" for j in range(counts.shape[1])])
    metadata = pd.DataFrame({"all": ["all"] * len(samples)}, index=samples)
    return DeseqDataSet(counts=frame, metadata=metadata, design="~1", n_cpus=n_cpus, quiet=True)


def fit_trend(counts: np.ndarray, factors: np.ndarray, n_cpus: int = 1) -> tuple[float, float]:
    """Parametric dispersion trend ``a0 + a1 / mean`` on the given genes, with PyDESeq2's routines.

    The size factors are those of the whole table (as R does for its subset), so they are set on the
    subset dataset rather than re-estimated from it.
    """
    dds = _quiet_dds(counts, n_cpus)
    normed = counts / factors[:, None]
    dds.obs["size_factors"] = factors
    dds.layers["normed_counts"] = normed
    dds.var["_normed_means"] = normed.mean(axis=0)
    dds.vst_fit_type = "parametric"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        dds.fit_genewise_dispersions(vst=True)
        dds.fit_dispersion_trend(vst=True)
    if dds.vst_fit_type != "parametric":
        raise InputError("the parametric dispersion trend did not converge on this data (PyDESeq2 fell back "
                         "to a mean trend); try `normalization: pydeseq2` or check the counts.")
    a0, a1 = dds.uns["vst_trend_coeffs"]
    return float(a0), float(a1)


def vst_transform(normed: np.ndarray, a0: float, a1: float) -> np.ndarray:
    """DESeq2's closed-form VST for a parametric trend (log2 scale)."""
    return np.log2((1 + a1 + 2 * a0 * normed + 2 * np.sqrt(a0 * normed * (1 + a1 + a0 * normed))) / (4 * a0))


def vst_fast(counts: np.ndarray, factors: np.ndarray, nsub: int = NSUB, n_cpus: int = 1) -> tuple[np.ndarray, dict]:
    """Blind VST of every gene with the trend fitted on a DESeq2-style subset of genes."""
    normed = counts / factors[:, None]
    subset = trend_subset(normed.mean(axis=0), nsub)
    if len(subset) < 10:
        raise InputError(f"only {len(subset)} genes have a mean normalized count above "
                         f"{MIN_BASEMEAN_FOR_TREND:g}; too few to fit a dispersion trend.")
    a0, a1 = fit_trend(counts[:, subset], factors, n_cpus)
    info = {"method": "fast", "trend_genes": int(len(subset)), "a0_asymptotic_dispersion": a0,
            "a1_extra_poisson": a1}
    return vst_transform(normed, a0, a1), info


def vst_pydeseq2(counts: np.ndarray, n_cpus: int = 1) -> tuple[np.ndarray, np.ndarray, dict]:
    """PyDESeq2's full blind VST (dispersions of all genes); returns vst, size factors, info."""
    dds = _quiet_dds(counts, n_cpus)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        dds.vst(use_design=False, fit_type="parametric")
    a0, a1 = dds.uns.get("vst_trend_coeffs", (np.nan, np.nan))
    info = {"method": "pydeseq2", "trend_genes": int(dds.var["non_zero"].sum()),
            "a0_asymptotic_dispersion": float(a0), "a1_extra_poisson": float(a1), "trend": dds.vst_fit_type}
    return np.asarray(dds.layers["vst_counts"]), dds.obs["size_factors"].to_numpy(), info


def normalize(adata: ad.AnnData, input_kind: str = "counts", method: str = "fast", n_cpus: int = 1) -> ad.AnnData:
    """Add ``layers['counts']``, ``layers['vst']``, ``obs['size_factor']`` and ``obs['library_size']``.

    For ``input_kind == 'log2_expression'`` the values are taken as the VST layer unchanged and the
    size factors and library sizes are NaN.
    """
    out = adata.copy()
    values = np.asarray(out.X, dtype=np.float64)
    if input_kind == "log2_expression":
        out.layers["vst"] = values
        out.obs["size_factor"] = np.nan
        out.obs["library_size"] = np.nan
        out.uns["normalization"] = {"method": "none (input is log2 expression)"}
        return out
    factors = size_factors(values)
    if method == "fast":
        vst, info = vst_fast(values, factors, n_cpus=n_cpus)
    elif method == "pydeseq2":
        vst, factors, info = vst_pydeseq2(values, n_cpus=n_cpus)
    else:
        raise ValueError(f"unknown normalization method {method!r}")
    out.layers["counts"] = values
    out.layers["vst"] = vst
    out.obs["size_factor"] = factors
    out.obs["library_size"] = values.sum(axis=1)
    out.uns["normalization"] = info
    return out
