"""Median-of-ratios size factors and the blind variance-stabilizing transform (DESeq2 / PyDESeq2).

Three ways to the same kind of VST, all blind (intercept-only design) and parametric, as DESeq2 does:

* ``fast`` (default): PyDESeq2's full blind VST (R's ``varianceStabilizingTransformation(blind =
  TRUE)``), the dispersion trend ``a0 + a1 / mean`` fitted on every non-zero gene. The genewise
  dispersions are the maximum-likelihood estimates PyDESeq2 computes (``fit_genewise_dispersions``:
  intercept-only means, Cox-Reid adjustment, method-of-moments start), but solved for all genes at
  once by a bracketed Newton iteration in numpy instead of one L-BFGS-B per gene; the trend is
  PyDESeq2's iterated gamma GLM, also in numpy (PyDESeq2 itself is not imported on this path: its
  import alone takes longer than this normalization). Tests check every piece against PyDESeq2.
  Memory is the counts, the VST and blocks of a few MB.
* ``vst_subset``: R DESeq2's ``vst()``, the trend fitted on ``nsub`` = 1,000 genes chosen evenly over
  the mean ranks of genes with mean normalized count > 5 and applied to all genes. Faster still at
  biobank scale, and what R users of ``vst()`` get; at low counts it can differ from the full VST by
  more than 0.5 log2 (the two trends differ; R shows the same gap between its two functions).
* ``pydeseq2``: PyDESeq2's own ``DeseqDataSet.vst_fit(use_design=False)``, for cross-checking.

In all three, genes whose dispersion sits at the lower bound are left out of the trend fit, as R's
``estimateDispersionsFit`` does (see ``fit_trend_from_dispersions``). Where the parametric trend
does not converge, all three do what PyDESeq2 does: warn and use a mean-based trend (see
``dispersion_trend``), recorded in ``uns["normalization"]``.

With ``input: log2_expression`` no normalization is done: the given values are the VST layer.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from concurrent.futures import ThreadPoolExecutor

import anndata as ad
import numpy as np
import pandas as pd
from scipy.special import digamma

from .errors import InputError

log = logging.getLogger("ctra")

NSUB = 1000
PYDESEQ2_MIN_DISP = 1e-8  # DeseqDataSet's min_disp default (DESeq2's minDisp)
MIN_BASEMEAN_FOR_TREND = 5.0
# PyDESeq2's DeseqDataSet defaults (min_mu, min_disp; max_disp is max(10, n_samples))
MIN_MU = 0.5
MIN_DISP = 1e-8
MAX_DISP = 10.0
ROW_BLOCK_BYTES = 16 << 20  # temporaries of the blockwise passes over the samples x genes matrix
GENE_CHUNK_ELEMENTS = 1 << 18  # samples x genes per chunk of the dispersion solver (2 MB float64)
NEWTON_TOL = 1e-8  # on log(dispersion), i.e. relative on the dispersion
NEWTON_MAXITER = 100
START_FLOOR = np.log(1e-6)  # lowest starting log(dispersion) of the solver
TREND_GLM_MAXITER = 200
START_GTOL = 1e-5  # scipy L-BFGS-B's default gtol, as PyDESeq2's fit_alpha_mle uses it


# ----------------------------------------------------------------------------------------------
# Size factors
# ----------------------------------------------------------------------------------------------


def _row_blocks(n_rows: int, n_cols: int) -> list[slice]:
    step = max(1, ROW_BLOCK_BYTES // (8 * max(n_cols, 1)))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def _map_blocks(func, blocks: list, n_cpus: int) -> list:
    """``[func(b) for b in blocks]``, on ``n_cpus`` threads (numpy and scipy release the GIL)."""
    workers = max(1, min(int(n_cpus or 1), len(blocks)))
    if workers == 1:
        return [func(block) for block in blocks]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(func, blocks))


def size_factors(counts: np.ndarray, n_cpus: int = 1) -> np.ndarray:
    """DESeq2 median-of-ratios size factors (samples x genes input).

    The same computation as PyDESeq2's ``deseq2_norm_fit`` + ``deseq2_norm_transform`` (and R's
    ``estimateSizeFactors``): only genes with no zero count enter the geometric means, and each
    sample's factor is ``exp(median(log(count / geometric mean)))``. Done in blocks of samples, so the
    only large temporary is the usable genes' counts (not a log copy of the whole table); the
    median is taken on the ratios and logged after (the same value: log is monotone, and for an
    even number of genes the two middle ratios are averaged geometrically, i.e. on the log scale).
    A table where every gene has a zero somewhere is refused rather than normalized differently.
    """
    n_samples, n_genes = counts.shape
    blocks = _row_blocks(n_samples, n_genes)
    usable = np.logical_and.reduce(_map_blocks(lambda rows: (counts[rows] > 0).all(axis=0), blocks, n_cpus))
    if not usable.any():
        raise InputError(
            "every gene has a zero count in at least one sample, so median-of-ratios size "
            "factors are undefined; check for an empty or failed library."
        )
    n_usable = int(usable.sum())
    blocks = _row_blocks(n_samples, n_usable)
    kept = _map_blocks(
        lambda rows: np.compress(usable, counts[rows], axis=1).astype(np.float64, copy=False), blocks, n_cpus
    )
    logmeans = np.sum(_map_blocks(lambda block: np.log(block).sum(axis=0), kept, n_cpus), axis=0) / n_samples
    inverse_geomeans = np.exp(-logmeans)
    middle = [(n_usable - 1) // 2, n_usable // 2]

    def log_medians(block: np.ndarray) -> np.ndarray:
        block *= inverse_geomeans  # ratios to the geometric means, in place
        block.partition(middle, axis=1)
        return 0.5 * (np.log(block[:, middle[0]]) + np.log(block[:, middle[1]]))

    return np.exp(np.concatenate(_map_blocks(log_medians, kept, n_cpus)))


def normalized_means(counts: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Mean normalized count per gene (DESeq2's baseMean), without a normalized copy of the table."""
    return (1.0 / factors) @ counts / counts.shape[0]


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


# ----------------------------------------------------------------------------------------------
# Genewise dispersions, vectorized over genes
# ----------------------------------------------------------------------------------------------


def _trigamma(x: np.ndarray) -> np.ndarray:
    """Trigamma for x > 0, to ~1e-4 relative: 1/x^2 + 1/(x+1)^2 + the asymptotic series at x + 2.

    Only the Newton curvature uses it, so its accuracy affects the number of iterations, not the
    solution (the root of the gradient, computed with scipy's digamma); a few array passes instead
    of an exact trigamma's dozens make the whole dispersion fit about twice as fast.
    """
    x = np.asarray(x, dtype=np.float64)
    out = 1.0 / (x * x)
    shifted = x + 1.0
    out += 1.0 / (shifted * shifted)
    shifted += 1.0
    z = 1.0 / shifted
    out += z * (1.0 + z * (0.5 + z * (1 / 6)))
    return out


def _dispersion_derivatives(
    theta: np.ndarray, y: np.ndarray, mu: np.ndarray, curvature: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Gradient (and curvature) in log(alpha) of PyDESeq2's genewise loss, per gene (column).

    Loss = NB negative log-likelihood (``pydeseq2.utils.nb_nll``) + 0.5 log det(X' W X) with
    X = intercept, i.e. 0.5 log sum_j mu_j / (1 + mu_j alpha) (the Cox-Reid term of
    ``fit_alpha_mle``). With r = 1/alpha, A = 1 + alpha mu, W = mu / A:
    dNLL/dalpha = r^2 E, E = sum_j [psi(y + r) - psi(r) - log A + alpha (mu - y) / A];
    dCR/dalpha = -0.5 sum W^2 / sum W.
    """
    alpha = np.exp(theta)
    r = 1.0 / alpha
    a_mu = mu * alpha
    big_a = 1.0 + a_mu
    y_r = y + r
    term = digamma(y_r)
    term -= digamma(r)
    term -= np.log1p(a_mu)
    diff = mu - y
    term += alpha * diff / big_a
    e = term.sum(axis=0)
    w = mu / big_a
    s = w.sum(axis=0)
    q = (w * w).sum(axis=0)
    cr1 = -0.5 * q / s  # dCR/dalpha
    grad = r * e + alpha * cr1
    if not curvature:
        return grad, None
    # dE/dalpha = sum_j [-r^2 (psi1(y + r) - psi1(r)) - mu / A + (mu - y) / A^2]
    de = (
        -(r * r) * (_trigamma(y_r).sum(axis=0) - y.shape[0] * _trigamma(r))
        - (w.sum(axis=0))
        + (diff / (big_a * big_a)).sum(axis=0)
    )
    cr2 = (s * (w * w * w).sum(axis=0) - 0.5 * q * q) / (s * s)  # d2CR/dalpha2
    hess = -r * e + de + alpha * cr1 + alpha * alpha * cr2
    return grad, hess


def _solve_chunk(
    y: np.ndarray, mu: np.ndarray, theta0: np.ndarray, lo_bound: float, hi_bound: float, floor_start_stays: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Root of the log-alpha gradient in [lo_bound, hi_bound] for each column; bracketed Newton."""
    n_genes = y.shape[1]
    # the gradient loses precision as alpha -> 0 (differences of digammas times 1/alpha), so the
    # iteration does not start there; the sign near 0 is taken from the Poisson limit below
    theta = np.clip(theta0, max(lo_bound, START_FLOOR), hi_bound)
    converged = np.zeros(n_genes, dtype=bool)
    # Sign of the gradient as alpha -> 0 (Poisson limit), computed without cancellation:
    # dLoss/dalpha(0) = -0.5 [sum((y - mu)^2 - y) + sum(mu^2) / sum(mu)]
    slope0 = -0.5 * (((y - mu) ** 2 - y).sum(axis=0) + (mu * mu).sum(axis=0) / mu.sum(axis=0))
    at_low = slope0 >= 0
    # Like PyDESeq2 (L-BFGS-B in log(alpha)) and R (line search in log(alpha)): a gene whose starting
    # estimate is the lower bound stays there when the log-scale gradient, ~ alpha slope0, is below
    # the optimizer's tolerance. Mostly genes with a count or two in all samples; DESeq2 leaves them
    # out of the trend, so the trend depends on reproducing this, not on their exact likelihood maximum.
    if floor_start_stays:
        at_low |= (theta0 <= lo_bound) & (np.exp(lo_bound) * np.abs(slope0) <= START_GTOL)
    theta[at_low] = lo_bound
    converged[at_low] = True
    active = np.flatnonzero(~at_low)
    # [lo, hi] brackets the root: the gradient is negative near lo_bound (slope0 < 0) and, in
    # practice, positive at hi_bound; a gene whose gradient stays negative walks up to hi_bound.
    lo = np.full(n_genes, lo_bound)
    hi = np.full(n_genes, hi_bound)
    for _ in range(NEWTON_MAXITER):
        if not active.size:
            break
        t = theta[active]
        grad, hess = _dispersion_derivatives(t, y[:, active], mu[:, active])
        negative = grad < 0
        lo[active[negative]] = t[negative]
        hi[active[~negative]] = t[~negative]
        with np.errstate(divide="ignore", invalid="ignore"):
            step = t - grad / hess
        l_a, h_a = lo[active], hi[active]
        bad = ~np.isfinite(step) | (hess <= 0) | (step <= l_a) | (step >= h_a)
        step[bad] = 0.5 * (l_a[bad] + h_a[bad])
        done = (np.abs(step - t) < NEWTON_TOL) | (grad == 0) | (h_a - l_a < NEWTON_TOL)
        theta[active] = step
        converged[active[done]] = True
        active = active[~done]
    return theta, converged


def moments_dispersions(normed: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """PyDESeq2's initial dispersions for an intercept-only design: min(rough, moments) estimates.

    ``fit_rough_dispersions`` (linear-model residuals, fitted values floored at 1) and
    ``fit_moments_dispersions``; the caller clips to [min_disp, max_disp].
    """
    n = normed.shape[0]
    mean = normed.mean(axis=0)
    y_hat = np.maximum(mean, 1.0)
    rough = np.maximum((((normed - y_hat) ** 2 - y_hat) / ((n - 1) * y_hat**2)).sum(axis=0), 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        moments = np.nan_to_num((normed.var(axis=0, ddof=1) - (1 / factors).mean() * mean) / mean**2)
    return np.minimum(rough, moments)


def genewise_dispersions(
    counts: np.ndarray,
    factors: np.ndarray,
    n_cpus: int = 1,
    min_disp: float = MIN_DISP,
    max_disp: float | None = None,
    min_mu: float = MIN_MU,
    floor_start_stays: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Blind (intercept-only) genewise dispersion MLEs of every column of ``counts``, vectorized.

    Equal to what PyDESeq2's ``DeseqDataSet.fit_genewise_dispersions(vst=True)`` computes with an
    intercept design (``lin_reg_mu`` means ``mu_ij = s_i * mean_i(y_ij / s_i)`` floored at
    ``min_mu``; ``fit_alpha_mle`` with the Cox-Reid term; start at the rough/moments estimate;
    result clipped to [min_disp, max_disp]), up to the optimizer's tolerance: PyDESeq2 stops
    L-BFGS-B at its default tolerances, this solves the score equation to 1e-8 in log(alpha).
    With ``floor_start_stays``, a gene that starts at ``min_disp`` with a log-scale gradient below
    L-BFGS-B's tolerance stays there, as in PyDESeq2 (and R); without it, it gets its exact maximum.
    Genes with all counts zero get NaN. Returns (dispersions, converged).
    """
    n_samples, n_genes = counts.shape
    max_disp = max(MAX_DISP, n_samples) if max_disp is None else max_disp
    dispersions = np.full(n_genes, np.nan)
    converged = np.zeros(n_genes, dtype=bool)
    nonzero = np.flatnonzero((counts != 0).any(axis=0))
    if n_samples < 2 or not nonzero.size:
        return dispersions, converged
    step = max(1, GENE_CHUNK_ELEMENTS // n_samples)
    chunks = [nonzero[i : i + step] for i in range(0, nonzero.size, step)]

    def solve(genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.ascontiguousarray(counts[:, genes], dtype=np.float64)
        normed = y / factors[:, None]
        mu = np.maximum(factors[:, None] * normed.mean(axis=0)[None, :], min_mu)
        start = np.clip(moments_dispersions(normed, factors), min_disp, max_disp)
        del normed
        return _solve_chunk(y, mu, np.log(start), np.log(min_disp), np.log(max_disp), floor_start_stays)

    results = _map_blocks(solve, chunks, n_cpus)
    for genes, (theta, ok) in zip(chunks, results):
        dispersions[genes] = np.clip(np.exp(theta), min_disp, max_disp)
        converged[genes] = ok
    return dispersions, converged


# ----------------------------------------------------------------------------------------------
# Trend and transform
# ----------------------------------------------------------------------------------------------


def _quiet_dds(counts: np.ndarray, n_cpus: int):
    # imported here: PyDESeq2 pulls in matplotlib and scikit-learn (~2.5 s at start-up), and only the
    # ``pydeseq2`` method needs it
    from pydeseq2.dds import DeseqDataSet

    samples = [f"s{i}" for i in range(counts.shape[0])]
    frame = pd.DataFrame(counts.astype(np.int64), index=samples, columns=[f"g{j}" for j in range(counts.shape[1])])
    metadata = pd.DataFrame({"all": ["all"] * len(samples)}, index=samples)
    return DeseqDataSet(counts=frame, metadata=metadata, design="~1", n_cpus=n_cpus, quiet=True)


def gamma_identity_glm(
    x: np.ndarray, y: np.ndarray, tol: float = 1e-10, max_iter: int = TREND_GLM_MAXITER
) -> tuple[np.ndarray, bool]:
    """Maximum-likelihood ``(a0, a1)`` of ``y ~ Gamma(mean = a0 + a1 x)`` (identity link).

    The loss is PyDESeq2's ``dispersion_trend_gamma_glm`` one, mean(y / mu + log mu); minimised by
    Fisher scoring (weights 1 / mu^2, as R's ``glm(family = Gamma("identity"))``) with step halving
    that keeps every mu positive and the loss decreasing. Returns (coefficients, converged).
    """
    X = np.column_stack([np.ones_like(x), x])

    def loss(beta: np.ndarray) -> float:
        mu = X @ beta
        return float(np.mean(y / mu + np.log(mu))) if (mu > 0).all() else np.inf

    beta = np.array([1.0, 1.0])
    current = loss(beta)
    for _ in range(max_iter):
        weights = (X @ beta) ** -2.0
        step = np.linalg.solve(X.T @ (X * weights[:, None]), X.T @ (weights * y)) - beta
        for _ in range(60):  # step halving
            candidate = loss(beta + step)
            if candidate <= current:
                break
            step /= 2
        else:
            return beta, False
        beta, current = beta + step, candidate
        if np.all(np.abs(step) <= tol * np.abs(beta)):
            return beta, True
    return beta, False


def fit_trend_from_dispersions(dispersions: np.ndarray, base_mean: np.ndarray) -> tuple[float, float]:
    """DESeq2's parametric dispersion trend ``a0 + a1 / mean`` on given genewise dispersions and means.

    PyDESeq2's ``_fit_parametric_dispersion_trend`` in numpy: fit the gamma GLM, drop genes whose
    dispersion is below 1e-4 or at least 15 times the fitted curve, refit until the coefficients
    settle. Like R DESeq2's ``estimateDispersionsFit`` (and unlike PyDESeq2 0.5), genes whose
    genewise dispersion sits at the lower bound (< 100 x minDisp) are left out. Importing PyDESeq2
    for this small fit would cost more than the whole fast normalization; tests check the two agree.
    """
    keep = (
        np.isfinite(dispersions) & np.isfinite(base_mean) & (base_mean > 0) & (dispersions >= 100 * PYDESEQ2_MIN_DISP)
    )
    y, x = dispersions[keep], 1.0 / base_mean[keep]
    coeffs, previous = np.array([1.0, 1.0]), np.array([0.1, 0.1])
    while (coeffs > 1e-10).all() and (np.log(np.abs(coeffs / previous)) ** 2).sum() >= 1e-6:
        previous = coeffs
        coeffs, converged = gamma_identity_glm(x, y) if len(y) >= 2 else (coeffs, False)
        if not converged or (coeffs <= 1e-10).any():
            raise TrendNotConverged("the parametric dispersion trend did not converge on this data.")
        ratio = y / (coeffs[0] + coeffs[1] * x)
        near = (ratio >= 1e-4) & (ratio < 15)
        y, x = y[near], x[near]
    return float(coeffs[0]), float(coeffs[1])


class TrendNotConverged(InputError):
    """The parametric trend's gamma GLM failed or gave a coefficient <= 1e-10 (e.g. dispersions that do
    not fall with the mean); :func:`dispersion_trend` then uses the mean-based trend."""


def mean_dispersion(dispersions: np.ndarray) -> float:
    """PyDESeq2's mean-based trend: the 0.1 %-trimmed mean of the genewise dispersions above
    10 x min_disp (``_fit_mean_dispersion_trend``, and ``vst_transform`` for ``fit_type='mean'``)."""
    from scipy.stats import trim_mean

    usable = dispersions[np.isfinite(dispersions) & (dispersions > 10 * PYDESEQ2_MIN_DISP)]
    if not usable.size:
        raise InputError(
            "no gene has a dispersion above the lower bound (every gene looks Poisson), so no "
            "dispersion trend can be fitted; check the counts."
        )
    return float(trim_mean(usable, proportiontocut=0.001))


def dispersion_trend(dispersions: np.ndarray, base_mean: np.ndarray) -> tuple[float, float, dict]:
    """``(a0, a1, record)``: the parametric trend, or, where it does not converge, what PyDESeq2 does:
    warn and use a mean-based trend, a constant dispersion ``a0 = mean_dispersion`` (its VST,
    ``(2 asinh(sqrt(a0 x)) - log(4 a0)) / log 2``, is the parametric formula with ``a1 = 0``)."""
    try:
        a0, a1 = fit_trend_from_dispersions(dispersions, base_mean)
        return a0, a1, {"trend": "parametric"}
    except TrendNotConverged:
        a0 = mean_dispersion(dispersions)
    message = (
        "the parametric dispersion trend (a0 + a1 / mean) did not converge on this data (dispersions "
        f"that do not fall with the mean); switched to a mean-based trend, a constant dispersion {a0:.4g}, "
        "as PyDESeq2 does"
    )
    log.warning("%s", message)
    return a0, 0.0, {"trend": "mean", "trend_fallback": message}


def vst_transform(normed: np.ndarray, a0: float, a1: float, out: np.ndarray | None = None) -> np.ndarray:
    """DESeq2's closed-form VST for a parametric trend (log2 scale); ``out`` may be ``normed``."""
    if out is None:
        out = np.empty(normed.shape)
    np.multiply(normed, a0, out=out)  # t = a0 x
    root = out * (1 + a1 + out)
    np.sqrt(root, out=root)
    out *= 2
    out += 1 + a1
    out += 2 * root
    out /= 4 * a0
    return np.log2(out, out=out)


def vst_counts(counts: np.ndarray, factors: np.ndarray, a0: float, a1: float, n_cpus: int = 1) -> np.ndarray:
    """VST of ``counts / factors`` in blocks of samples: one output matrix, small temporaries."""
    out = np.empty(counts.shape, dtype=np.float64)

    def transform(rows: slice) -> None:
        np.divide(counts[rows], factors[rows, None], out=out[rows])
        vst_transform(out[rows], a0, a1, out=out[rows])

    _map_blocks(transform, _row_blocks(*counts.shape), n_cpus)
    return out


def vst_fast(
    counts: np.ndarray, factors: np.ndarray, nsub: int | None = None, n_cpus: int = 1
) -> tuple[np.ndarray, dict]:
    """Blind VST of every gene, the trend fitted on every non-zero gene (``nsub=None``: the full VST)
    or on DESeq2 ``vst()``'s subset of ``nsub`` genes."""
    base_mean = normalized_means(counts, factors)
    if nsub is None:
        dispersions, _ = genewise_dispersions(counts, factors, n_cpus=n_cpus)  # NaN for all-zero genes
        trend_means = base_mean
    else:
        subset = trend_subset(base_mean, nsub)
        if len(subset) < 10:
            raise InputError(
                f"only {len(subset)} genes have a mean normalized count above "
                f"{MIN_BASEMEAN_FOR_TREND:g}; too few to fit a dispersion trend (use the default "
                "`normalization: fast`)."
            )
        # R's vst() is the reference here, and on these genes (mean > 5) the exact maxima reproduce it
        dispersions, _ = genewise_dispersions(counts[:, subset], factors, n_cpus=n_cpus, floor_start_stays=False)
        trend_means = base_mean[subset]
    a0, a1, trend = dispersion_trend(dispersions, trend_means)
    info = {
        "method": "fast" if nsub is None else "vst_subset",
        "trend_genes": _trend_gene_count(dispersions),
        "a0_asymptotic_dispersion": a0,
        "a1_extra_poisson": a1,
        **trend,
    }
    return vst_counts(counts, factors, a0, a1, n_cpus), info


def _trend_gene_count(dispersions: np.ndarray) -> int:
    """Genes that can enter the trend: non-zero and above the dispersion floor."""
    return int(np.sum(np.isfinite(dispersions) & (dispersions >= 100 * PYDESEQ2_MIN_DISP)))


def vst_pydeseq2(counts: np.ndarray, n_cpus: int = 1) -> tuple[np.ndarray, np.ndarray, dict]:
    """PyDESeq2's full blind VST fit (dispersions of all genes), with the trend refitted under DESeq2's
    rule for low dispersions (see ``fit_trend_from_dispersions``); returns vst, size factors, info."""
    dds = _quiet_dds(counts, n_cpus)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        dds.vst_fit(use_design=False)
    dispersions = dds.var["vst_genewise_dispersions"].to_numpy()
    a0, a1, trend = dispersion_trend(dispersions, dds.var["_normed_means"].to_numpy())
    info = {
        "method": "pydeseq2",
        "trend_genes": _trend_gene_count(dispersions),
        "a0_asymptotic_dispersion": a0,
        "a1_extra_poisson": a1,
        **trend,
    }
    return vst_transform(np.asarray(dds.layers["normed_counts"]), a0, a1), dds.obs["size_factors"].to_numpy(), info


def normalize(adata: ad.AnnData, input_kind: str = "counts", method: str = "fast", n_cpus: int = 1) -> ad.AnnData:
    """A new AnnData with ``layers['counts']``, ``layers['vst']``, ``obs['size_factor']`` and
    ``obs['library_size']``; ``X`` is left empty, so that the table is stored once, not twice.

    ``adata`` (counts in ``X``) is not modified; ``layers['counts']`` shares memory with ``adata.X``
    when that is already a float64 array (copy before writing into it in place).

    For ``input_kind == 'log2_expression'`` the values are taken as the VST layer unchanged (no
    counts layer) and the size factors and library sizes are NaN.
    """
    values = adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X
    values = np.asarray(values, dtype=np.float64)
    out = ad.AnnData(obs=adata.obs.copy(), var=adata.var.copy(), uns=copy.deepcopy(dict(adata.uns)))
    if input_kind == "log2_expression":
        out.layers["vst"] = values
        out.obs["size_factor"] = np.nan
        out.obs["library_size"] = np.nan
        out.uns["normalization"] = {"method": "none (input is log2 expression)"}
        return out
    factors = size_factors(values, n_cpus)
    if method in ("fast", "vst_subset"):
        vst, info = vst_fast(values, factors, nsub=None if method == "fast" else NSUB, n_cpus=n_cpus)
    elif method == "pydeseq2":
        vst, factors, info = vst_pydeseq2(values, n_cpus=n_cpus)
    else:
        raise ValueError(f"unknown normalization method {method!r}")
    out.layers["counts"] = values
    out.layers["vst"] = vst
    out.obs["size_factor"] = factors
    out.obs["library_size"] = values.sum(axis=1)
    if "non_integer_counts" in adata.uns:  # estimated counts rounded by validate: part of the method
        info["non_integer_counts_rounded"] = int(adata.uns["non_integer_counts"]["cells"])
    out.uns["normalization"] = info
    return out


def methods_notes(info: dict) -> str:
    """Sentences for the report's Methods about what the normalization did beyond the usual: estimated
    counts rounded, a mean-based dispersion trend instead of the parametric one (empty otherwise)."""
    notes = []
    if info.get("non_integer_counts_rounded"):
        notes.append(
            f"{int(info['non_integer_counts_rounded']):,} non-integer values (estimated counts) were rounded "
            "to the nearest integer before normalization (`non_integer_counts: round`), as DESeq2 users do "
            "for estimated counts (DESeqDataSetFromTximport, round())."
        )
    if info.get("trend") == "mean":
        notes.append(
            "The parametric dispersion trend did not converge on this data (dispersions that do not fall "
            "with the mean), so, as PyDESeq2 does, a mean-based trend was used: one dispersion for every "
            f"gene, the 0.1 %-trimmed mean of the genewise dispersions ({info['a0_asymptotic_dispersion']:.4g})."
        )
    return "".join(" " + n for n in notes)
