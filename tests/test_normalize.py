"""Normalization: size factors, the DESeq2 vst() gene subset, vectorized dispersions, fast vs full VST.

References are independent of the code under test: hand-worked numbers, a loop-and-statistics
implementation of median-of-ratios, finite differences of PyDESeq2's own loss, and PyDESeq2's
``fit_genewise_dispersions`` / ``vst``.
"""

from __future__ import annotations

import contextlib
import io
import math
import statistics
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from pydeseq2.dds import DeseqDataSet
from pydeseq2.utils import nb_nll

from ctra.errors import InputError
from ctra.normalize import (
    PYDESEQ2_MIN_DISP,
    _dispersion_derivatives,
    dispersion_trend,
    fit_trend_from_dispersions,
    gamma_identity_glm,
    genewise_dispersions,
    methods_notes,
    normalize,
    normalized_means,
    size_factors,
    trend_subset,
    vst_fast,
    vst_transform,
)


def simulate_counts(n_samples: int, n_genes: int, seed: int) -> np.ndarray:
    """Samples x genes NB counts: log-normal means, dispersions scattered around 0.05 + 1 / mean."""
    rng = np.random.default_rng(seed)
    means = np.exp(rng.normal(4.0, 1.8, n_genes))
    alpha = (0.05 + 1.0 / means) * np.exp(rng.normal(0, 0.4, n_genes))
    library = np.exp(rng.normal(0, 0.25, n_samples))[:, None]
    mu = library * means[None, :] * np.exp(rng.normal(0, 0.1, (n_samples, n_genes)))
    return rng.negative_binomial(1 / alpha, 1 / (1 + alpha * mu)).astype(np.float64)


def quiet_dds(counts: np.ndarray, n_cpus: int = 1) -> DeseqDataSet:
    samples = [f"s{i}" for i in range(counts.shape[0])]
    frame = pd.DataFrame(counts.astype(np.int64), index=samples, columns=[f"g{j}" for j in range(counts.shape[1])])
    return DeseqDataSet(
        counts=frame,
        metadata=pd.DataFrame({"c": ["a"] * len(samples)}, index=samples),
        design="~1",
        n_cpus=n_cpus,
        quiet=True,
    )


@pytest.fixture(scope="module")
def cohort() -> np.ndarray:
    counts = simulate_counts(100, 3000, seed=7)
    return counts[:, counts.sum(axis=0) > 0]


# ----------------------------------------------------------------------------------------------
# Size factors
# ----------------------------------------------------------------------------------------------


def test_size_factors_hand_worked():
    # genes 1-3 are 1:2:0.5 across samples (geometric means 10, 20, 30), gene 4 has a zero and is
    # left out, gene 5 is flat (geometric mean 40): ratios s1 1,1,1,1 / s2 2,2,2,1 / s3 .5,.5,.5,1
    counts = np.array([[10, 20, 30, 0, 40], [20, 40, 60, 5, 40], [5, 10, 15, 7, 40]], dtype=float)
    np.testing.assert_allclose(size_factors(counts), [1.0, 2.0, 0.5], rtol=1e-12)


def test_size_factors_match_loop_reference():
    rng = np.random.default_rng(3)
    counts = rng.poisson(rng.gamma(2.0, 30.0, (1, 40)) * rng.uniform(0.5, 2.0, (9, 1))).astype(float)
    counts[2, 5] = counts[7, 11] = 0  # genes 5 and 11 drop out of the reference genes
    n = counts.shape[0]
    usable = [j for j in range(counts.shape[1]) if all(counts[i, j] > 0 for i in range(n))]
    assert 5 not in usable and 11 not in usable and len(usable) % 2 == 0  # even: two middle values
    log_geo = {j: sum(math.log(counts[i, j]) for i in range(n)) / n for j in usable}
    expected = [math.exp(statistics.median(math.log(counts[i, j]) - log_geo[j] for j in usable)) for i in range(n)]
    for n_cpus in (1, 2):
        np.testing.assert_allclose(size_factors(counts, n_cpus), expected, rtol=1e-12)


def test_size_factors_refuse_all_genes_with_a_zero():
    counts = np.array([[0, 3, 4], [5, 0, 2], [1, 2, 0]], dtype=float)
    with pytest.raises(InputError, match="every gene has a zero"):
        size_factors(counts)


def test_normalized_means_are_means_of_counts_over_factors():
    counts = np.array([[10, 0, 3], [20, 4, 6]], dtype=float)
    np.testing.assert_allclose(normalized_means(counts, np.array([1.0, 2.0])), [10.0, 1.0, 3.0])


# ----------------------------------------------------------------------------------------------
# DESeq2 vst() gene subset
# ----------------------------------------------------------------------------------------------


def test_trend_subset_evenly_spaced_ranks_as_r():
    # eligible (> 5) means, in rank order: 6 (gene 7), 7 (1), 8 (9), 9 (3), 10 (5), 11 (0), 12 (8), 13 (4)
    base_mean = np.array([11, 7, 1, 9, 13, 10, 5, 6, 12, 8], dtype=float)
    # R: seq(1, 8, length = 3) = 1, 4.5, 8; round() gives 1, 4, 8 (half to even) -> ranks 1, 4, 8
    assert trend_subset(base_mean, nsub=3).tolist() == [7, 3, 4]
    # R: seq(1, 8, length = 4) = 1, 3.33, 5.67, 8 -> 1, 3, 6, 8
    assert trend_subset(base_mean, nsub=4).tolist() == [7, 9, 0, 4]
    # fewer eligible genes than nsub: all of them (gene 6 has mean 5, not > 5)
    assert sorted(trend_subset(base_mean, nsub=20).tolist()) == [0, 1, 3, 4, 5, 7, 8, 9]


# ----------------------------------------------------------------------------------------------
# Vectorized genewise dispersions
# ----------------------------------------------------------------------------------------------


def pydeseq2_loss(log_alpha: float, y: np.ndarray, mu: np.ndarray) -> float:
    """PyDESeq2's fit_alpha_mle objective for an intercept design (NB NLL + Cox-Reid term)."""
    alpha = math.exp(log_alpha)
    return float(nb_nll(y, mu, alpha)) + 0.5 * math.log(np.sum(mu / (1 + mu * alpha)))


@pytest.mark.parametrize("log_alpha", [-4.0, -2.0, 0.5])
def test_dispersion_gradient_and_curvature_match_finite_differences(log_alpha):
    rng = np.random.default_rng(11)
    y = rng.negative_binomial(5, 0.05, (50, 1)).astype(float)
    mu = np.full_like(y, y.mean())
    h = 1e-4
    numeric_grad = (
        pydeseq2_loss(log_alpha + h, y[:, 0], mu[:, 0]) - pydeseq2_loss(log_alpha - h, y[:, 0], mu[:, 0])
    ) / (2 * h)
    numeric_curv = (
        pydeseq2_loss(log_alpha + h, y[:, 0], mu[:, 0])
        - 2 * pydeseq2_loss(log_alpha, y[:, 0], mu[:, 0])
        + pydeseq2_loss(log_alpha - h, y[:, 0], mu[:, 0])
    ) / h**2
    grad, curv = _dispersion_derivatives(np.array([log_alpha]), y, mu)
    assert grad[0] == pytest.approx(numeric_grad, rel=1e-5, abs=1e-6)
    assert curv[0] == pytest.approx(numeric_curv, rel=1e-3, abs=1e-3)


def pydeseq2_dispersions(counts: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyDESeq2's own ``fit_genewise_dispersions(vst=True)`` with the given size factors: (dispersions, converged)."""
    dds = quiet_dds(counts)
    dds.obs["size_factors"] = factors
    dds.layers["normed_counts"] = counts / factors[:, None]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        dds.fit_genewise_dispersions(vst=True)
    return dds.var["vst_genewise_dispersions"].to_numpy(), dds.var["_genewise_converged"].to_numpy(dtype=bool)


def test_genewise_dispersions_equal_pydeseq2(cohort):
    factors = size_factors(cohort)
    genes = np.flatnonzero(normalized_means(cohort, factors) > 5)[:400]
    counts = cohort[:, genes]
    ours, ours_converged = genewise_dispersions(counts, factors, n_cpus=2)

    reference, reference_converged = pydeseq2_dispersions(counts, factors)

    assert ours_converged.all()
    compare = reference_converged & (reference > 1e-6)
    assert compare.sum() > 0.95 * len(genes)
    relative = np.abs(ours[compare] / reference[compare] - 1)
    assert relative.max() < 1e-3, (relative.max(), genes[compare][np.argmax(relative)])


def test_low_count_genes_sit_at_the_floor_where_pydeseq2_leaves_them(cohort):
    """Genes with a count or two: PyDESeq2's L-BFGS-B starts at the floor and stops there; which
    genes do decides the full trend (DESeq2 leaves them out), so ctra must pick the same ones."""
    rng = np.random.default_rng(4)
    sparse_genes = rng.poisson(rng.uniform(0.005, 0.3, 300), (cohort.shape[0], 300)).astype(float)
    counts = np.hstack([cohort[:, :200], sparse_genes])
    counts = counts[:, counts.sum(axis=0) > 0]
    factors = size_factors(cohort)
    ours, _ = genewise_dispersions(counts, factors, n_cpus=2)
    exact, _ = genewise_dispersions(counts, factors, n_cpus=2, floor_start_stays=False)
    floor = 100 * PYDESEQ2_MIN_DISP
    reference_floor = pydeseq2_dispersions(counts, factors)[0] < floor
    assert reference_floor.sum() > 50  # the case is exercised
    assert np.mean((ours < floor) == reference_floor) > 0.98
    assert np.mean((exact < floor) == reference_floor) < 0.9  # exact maxima would not reproduce it


def test_dispersions_of_poisson_like_genes_are_the_lower_bound():
    factors = np.ones(30)
    flat = np.full((30, 1), 10.0)  # no variance at all: the likelihood increases with alpha
    estimate, converged = genewise_dispersions(flat, factors)
    assert estimate[0] == 1e-8 and converged[0]


def test_dispersions_all_zero_gene_is_nan():
    counts = np.column_stack([np.zeros(10), np.arange(10.0) * 3 + 1])
    estimate, _ = genewise_dispersions(counts, np.ones(10))
    assert np.isnan(estimate[0]) and np.isfinite(estimate[1])


# ----------------------------------------------------------------------------------------------
# Dispersion trend
# ----------------------------------------------------------------------------------------------


def pydeseq2_trend(dispersions: np.ndarray, base_mean: np.ndarray) -> tuple[float, float]:
    """PyDESeq2's own ``_fit_parametric_dispersion_trend`` on given dispersions and means."""
    dds = quiet_dds(np.ones((2, len(dispersions))))
    dds.var["vst_genewise_dispersions"] = dispersions
    dds.var["_normed_means"] = base_mean
    dds.var["non_zero"] = True
    dds.non_zero_genes = dds.var_names
    dds.vst_fit_type = "parametric"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        dds.fit_dispersion_trend(vst=True)
    assert dds.vst_fit_type == "parametric"
    a0, a1 = dds.uns["vst_trend_coeffs"]
    return float(a0), float(a1)


@pytest.mark.parametrize("subset", ["vst_subset", "all_genes"])
def test_trend_equals_pydeseq2_routine(cohort, subset):
    """Same coefficients as PyDESeq2's iterated gamma GLM (L-BFGS-B there, Fisher scoring here),
    on genes above the dispersion floor (which DESeq2 leaves out and PyDESeq2 0.5 does not)."""
    factors = size_factors(cohort)
    base_mean = normalized_means(cohort, factors)
    genes = trend_subset(base_mean) if subset == "vst_subset" else np.arange(cohort.shape[1])
    dispersions, _ = genewise_dispersions(cohort[:, genes], factors, n_cpus=2)
    dispersions[::50] = PYDESEQ2_MIN_DISP  # Poisson-like genes at the floor must be left out
    above_floor = np.isfinite(dispersions) & (dispersions >= 100 * PYDESEQ2_MIN_DISP)
    ours = fit_trend_from_dispersions(dispersions, base_mean[genes])
    reference = pydeseq2_trend(dispersions[above_floor], base_mean[genes][above_floor])
    np.testing.assert_allclose(ours, reference, rtol=1e-5)


def test_gamma_glm_recovers_a_known_trend_and_is_the_likelihood_maximum():
    rng = np.random.default_rng(3)
    mean = np.exp(rng.uniform(0, 9, 20000))
    truth = np.array([0.08, 1.4])
    shape = 2.0  # gamma noise around the curve, as genewise dispersions scatter
    y = (truth[0] + truth[1] / mean) * rng.gamma(shape, 1 / shape, mean.size)
    beta, converged = gamma_identity_glm(1 / mean, y)
    assert converged
    np.testing.assert_allclose(beta, truth, rtol=0.05)

    def loss(b: np.ndarray) -> float:  # the gamma deviance up to constants, written out here
        mu = b[0] + b[1] / mean
        return float(np.mean(y / mu + np.log(mu)))

    for j in range(2):
        h = np.zeros(2)
        h[j] = 1e-6 * beta[j]
        assert loss(beta + h) >= loss(beta) and loss(beta - h) >= loss(beta)


def test_trend_failure_is_an_input_error():
    flat = np.full(50, 1e-9)  # every gene at the dispersion floor: nothing to fit
    with pytest.raises(InputError, match="dispersion trend"):
        fit_trend_from_dispersions(flat, np.linspace(10, 1000, 50))
    with pytest.raises(InputError, match="every gene looks Poisson"):  # nor a mean-based trend
        dispersion_trend(flat, np.linspace(10, 1000, 50))


def flat_dispersion_counts(seed: int = 3) -> np.ndarray:
    """40 samples x 1,500 genes, every gene's dispersion 0.1 whatever its mean (20 to 5,000): the
    parametric trend a0 + a1 / mean has nothing to fit in a1 (with this seed its fit gives a1 <= 0)."""
    rng = np.random.default_rng(seed)
    means = np.exp(rng.uniform(np.log(20), np.log(5000), 1500))
    mu = np.exp(rng.normal(0, 0.2, 40))[:, None] * means[None, :]
    return rng.negative_binomial(10.0, 1 / (1 + 0.1 * mu)).astype(np.float64)


@pytest.mark.parametrize("method", ["fast", pytest.param("pydeseq2", marks=pytest.mark.slow)])  # PyDESeq2's own: ~40 s
def test_flat_dispersions_fall_back_to_the_mean_trend_as_pydeseq2(method, caplog):
    """Where the parametric trend fails, PyDESeq2 warns and uses a mean-based trend; ctra does the same
    (it used to stop), and its VST matches PyDESeq2's own on such a cohort."""
    counts = flat_dispersion_counts()
    dds = quiet_dds(counts)
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        dds.vst(use_design=False, fit_type="parametric")
    assert dds.vst_fit_type == "mean"  # PyDESeq2 itself switched
    assert any("Switching to a mean-based dispersion trend" in str(w.message) for w in caught)
    reference = np.asarray(dds.layers["vst_counts"])
    with caplog.at_level("WARNING", logger="ctra"):
        out = normalize(ad.AnnData(X=counts), method=method)
    info = out.uns["normalization"]
    assert info["trend"] == "mean" and info["a1_extra_poisson"] == 0
    assert info["a0_asymptotic_dispersion"] == pytest.approx(0.1, rel=0.05)
    assert "mean-based trend" in caplog.text and "as PyDESeq2 does" in info["trend_fallback"]
    assert np.abs(out.layers["vst"] - reference).max() < 0.05
    assert "a mean-based trend was used" in methods_notes(info)


def test_mean_trend_vst_is_pydeseq2s_arcsinh_formula():
    x = np.geomspace(0.01, 1e5, 50)
    d = 0.13
    arcsinh = (2 * np.arcsinh(np.sqrt(d * x)) - np.log(d) - np.log(4)) / np.log(2)
    np.testing.assert_allclose(vst_transform(x, d, 0.0), arcsinh, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# VST
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pydeseq2_full_vst(cohort) -> tuple[np.ndarray, np.ndarray]:
    """PyDESeq2's own full blind VST of the cohort (``DeseqDataSet.vst``) and its size factors."""
    dds = quiet_dds(cohort, n_cpus=2)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        dds.vst(use_design=False, fit_type="parametric")
    assert dds.vst_fit_type == "parametric"
    return np.asarray(dds.layers["vst_counts"]), dds.obs["size_factors"].to_numpy()


@pytest.mark.slow  # PyDESeq2's own fit, ~9 s; the default suite checks the fast VST against R's (test_reference_agreement)
def test_fast_vst_within_001_of_pydeseq2_full_vst_on_every_gene(cohort, pydeseq2_full_vst):
    """The default is PyDESeq2's full VST: the same trend genes (none at the floor here), the same
    estimators; what is left is L-BFGS-B's tolerance on PyDESeq2's side."""
    full, full_factors = pydeseq2_full_vst
    factors = size_factors(cohort)
    np.testing.assert_allclose(factors, full_factors, rtol=1e-10)
    fast, info = vst_fast(cohort, factors, n_cpus=2)
    assert info["method"] == "fast" and info["trend_genes"] > 0.99 * cohort.shape[1]
    assert np.abs(fast - full).max() < 0.01


@pytest.mark.slow  # shares PyDESeq2's fit with the test above
def test_vst_subset_fits_on_1000_genes_and_agrees_where_counts_are_high(cohort, pydeseq2_full_vst):
    full, _ = pydeseq2_full_vst
    factors = size_factors(cohort)
    subset, info = vst_fast(cohort, factors, nsub=1000, n_cpus=2)
    assert info["method"] == "vst_subset" and info["trend_genes"] == 1000
    # The two trends differ (1,000 genes with mean > 5 vs every gene, as R's vst() vs
    # varianceStabilizingTransformation()); the VST difference is about |delta((1 + a1) / a0)| /
    # (2 ln 2 x) at count x, largest for the lowest counts.
    well_expressed = normalized_means(cohort, factors) >= 100
    assert well_expressed.sum() > 500
    assert np.abs(subset - full)[:, well_expressed].max() < 0.05


def test_vst_is_monotone_in_counts():
    x = np.concatenate([[0.0], np.geomspace(1e-3, 1e7, 4000)])
    for a0, a1 in [(0.08, 1.4), (0.01, 0.2), (1.5, 8.0)]:
        assert np.all(np.diff(vst_transform(x, a0, a1)) > 0)
    # and through normalize(): within a gene, samples with a larger normalized count get a larger VST
    counts = simulate_counts(60, 1200, seed=5)
    out = normalize(ad.AnnData(X=counts[:, counts.sum(axis=0) > 0]))
    normed = out.layers["counts"] / out.obs["size_factor"].to_numpy()[:, None]
    for j in range(0, out.n_vars, 37):
        order = np.argsort(normed[:, j], kind="stable")
        assert np.all(np.diff(out.layers["vst"][order, j]) >= 0)


def test_vst_transform_in_place_equals_formula():
    x = np.array([[0.0, 1.0, 10.0], [100.0, 1e4, 3.5]])
    a0, a1 = 0.07, 1.3
    expected = np.log2((1 + a1 + 2 * a0 * x + 2 * np.sqrt(a0 * x * (1 + a1 + a0 * x))) / (4 * a0))
    work = x.copy()
    vst_transform(work, a0, a1, out=work)
    np.testing.assert_allclose(work, expected, rtol=1e-14)
    # zero counts map to log2((1 + a1) / (4 a0))
    assert work[0, 0] == pytest.approx(math.log2((1 + a1) / (4 * a0)))


# ----------------------------------------------------------------------------------------------
# normalize() API
# ----------------------------------------------------------------------------------------------


def test_normalize_outputs_and_input_untouched(cohort):
    adata = ad.AnnData(
        X=cohort.copy(),
        obs=pd.DataFrame(index=[f"s{i}" for i in range(cohort.shape[0])]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(cohort.shape[1])]),
    )
    adata.uns["study"] = "x"
    before = adata.X.copy()
    out = normalize(adata, n_cpus=2)
    assert set(out.layers.keys()) == {"counts", "vst"}
    np.testing.assert_array_equal(out.layers["counts"], cohort)
    np.testing.assert_allclose(out.obs["size_factor"], size_factors(cohort))
    np.testing.assert_allclose(out.obs["library_size"], cohort.sum(axis=1))
    assert out.uns["normalization"]["method"] == "fast" and out.uns["study"] == "x"
    assert np.isfinite(out.layers["vst"]).all()
    np.testing.assert_array_equal(adata.X, before)
    assert "size_factor" not in adata.obs and "vst" not in adata.layers


def test_log2_expression_passes_through_unchanged():
    rng = np.random.default_rng(2)
    values = rng.normal(6, 2, (12, 30))
    adata = ad.AnnData(X=values.copy())
    out = normalize(adata, input_kind="log2_expression")
    np.testing.assert_array_equal(out.layers["vst"], values)
    assert out.obs["size_factor"].isna().all() and out.obs["library_size"].isna().all()
    assert out.uns["normalization"]["method"].startswith("none")
    np.testing.assert_array_equal(adata.X, values)


def test_unknown_method_refused(cohort):
    with pytest.raises(ValueError, match="unknown normalization method"):
        normalize(ad.AnnData(X=cohort[:10, :50]), method="tmm")


# ----------------------------------------------------------------------------------------------
# Against R DESeq2's vst() itself, where R and DESeq2 are installed
# ----------------------------------------------------------------------------------------------

R_VST = r"""
suppressMessages(library(DESeq2))
args <- commandArgs(trailingOnly = TRUE)
counts <- as.matrix(read.delim(args[1], row.names = 1, check.names = FALSE))
storage.mode(counts) <- "integer"
dds <- DESeqDataSetFromMatrix(counts, data.frame(row.names = colnames(counts), x = rep(1, ncol(counts))), ~1)
write.table(assay(vst(dds, blind = TRUE, nsub = 1000, fitType = "parametric")), args[2], sep = "\t", quote = FALSE)
write.table(assay(varianceStabilizingTransformation(dds, blind = TRUE, fitType = "parametric")), args[3],
            sep = "\t", quote = FALSE)
dds <- estimateSizeFactors(dds)
base_mean <- rowMeans(counts(dds, normalized = TRUE))
eligible <- base_mean[base_mean > 5]
o <- order(eligible)
writeLines(names(eligible)[o[round(seq(from = 1, to = length(o), length = 1000))]], args[4])
"""


def _r_deseq2_available() -> bool:
    import shutil
    import subprocess

    if shutil.which("Rscript") is None:
        return False
    done = subprocess.run(["Rscript", "-e", "suppressMessages(library(DESeq2))"], capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
def test_fast_vst_is_r_vst_and_full_vst_is_r_varianceStabilizingTransformation(cohort, pydeseq2_full_vst, tmp_path):
    """ctra's vst_subset is R's vst() (the same 1,000 genes; the VST within 0.03, the genewise
    dispersion estimators of DESeq2 and PyDESeq2 differing slightly), ctra's fast path and PyDESeq2's
    full vst are R's varianceStabilizingTransformation(), and the subset-vs-full difference is R's own
    vst()-vs-VST one."""
    import subprocess

    if not _r_deseq2_available():
        pytest.skip("Rscript with the DESeq2 package is not installed")
    genes = [f"g{j}" for j in range(cohort.shape[1])]
    table = pd.DataFrame(cohort.T.astype(np.int64), index=genes, columns=[f"s{i}" for i in range(cohort.shape[0])])
    table.to_csv(tmp_path / "counts.tsv", sep="\t")
    (tmp_path / "vst.R").write_text(R_VST)
    paths = [tmp_path / name for name in ("counts.tsv", "vst.tsv", "full.tsv", "subset.txt")]
    subprocess.run(["Rscript", str(tmp_path / "vst.R"), *map(str, paths)], check=True, capture_output=True)
    r_vst, r_full = (pd.read_csv(p, sep="\t", index_col=0).loc[genes].to_numpy().T for p in paths[1:3])

    factors = size_factors(cohort)
    assert [genes[j] for j in trend_subset(normalized_means(cohort, factors))] == paths[3].read_text().split()
    subset, _ = vst_fast(cohort, factors, nsub=1000)
    fast, _ = vst_fast(cohort, factors)
    full, _ = pydeseq2_full_vst
    assert np.abs(subset - r_vst).max() < 0.03
    assert np.abs(fast - r_full).max() < 0.03
    assert np.abs(full - r_full).max() < 0.03
    assert np.abs((subset - full) - (r_vst - r_full)).max() < 0.03
