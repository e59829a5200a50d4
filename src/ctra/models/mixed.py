"""Arm x time contrasts from a linear mixed model fitted by REML, with Satterthwaite df.

Model (lme4 notation)::

    score ~ arm * time [+ period + period:time] + covariates [+ marker VST]
            + (1 | participant) [+ (1 | participant:period)]

with treatment coding, the control arm and baseline time as references (from the config, never
alphabetical). The random effects are nested in participant, so V is block-diagonal by participant
and every REML quantity is a sum over participant blocks; blocks of equal size are stacked and
inverted in one batched call. The REML criterion with the residual variance profiled out is
minimised over the relative standard deviations (lme4's theta), and denominator degrees of freedom
follow Satterthwaite (as lmerTest's default): numerical Hessian of the REML deviance in the variance
parameters and numerical gradient of the contrast variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import stdtr, stdtrit  # Student t cdf and quantile (scipy.stats costs ~1 s to import)

from ..config import ModelSettings
from ..design import Design, interaction_column, marker_decision, study_design, time_column
from ..endpoints import association_endpoint, primary_endpoint
from ..genesets import SCORE_NAMES, set_genes

LOG_2PI = float(np.log(2 * np.pi))
MAX_THETA = 1e3  # relative SD of a random effect; beyond this H is numerically singular


# ----------------------------------------------------------------------------------------------
# REML for nested random intercepts, block-diagonal by participant
# ----------------------------------------------------------------------------------------------


class BlockStructure:
    """Participant blocks grouped by size, with per-component 'same group' matrices stacked."""

    def __init__(self, design: Design):
        order = np.argsort(design.participant, kind="stable")
        sizes = np.bincount(design.participant)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.n, self.p = design.X.shape
        self.groups = []
        for size in np.unique(sizes):
            owners = np.flatnonzero(sizes == size)
            index = order[starts[owners][:, None] + np.arange(size)[None, :]]
            same = [(c[index][:, :, None] == c[index][:, None, :]).astype(np.float64) for c in design.components]
            self.groups.append((index, same))

    def crossprods(
        self, gamma: np.ndarray, X: np.ndarray, Y: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """log|H|, X'H^-1X, X'H^-1Y, Y'H^-1Y (diag only) for H = I + sum_k gamma_k S_k.

        ``Y`` is n x m (several responses share H, e.g. genes or permutations of one score). With a
        single random intercept, H_i^-1 = I - w J with w = gamma / (1 + m gamma), so only block sums are
        needed; nested components go through a batched Cholesky per block size.
        """
        if len(gamma) <= 1:  # no random effect (one draw per participant): ordinary least squares
            return self._intercept_crossprods(float(gamma[0]) if len(gamma) else 0.0, X, Y)
        logdet, xhx = 0.0, np.zeros((self.p, self.p))
        xhy, yhy = np.zeros((self.p, Y.shape[1])), np.zeros(Y.shape[1])
        for index, same in self.groups:
            size = index.shape[1]
            H = np.broadcast_to(np.eye(size), (len(index), size, size)).copy()
            for g, s in zip(gamma, same):
                H += g * s
            chol = np.linalg.cholesky(H)
            logdet += 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum()
            xw = np.linalg.solve(chol, X[index])  # L^-1 X_i
            yw = np.linalg.solve(chol, Y[index])  # L^-1 Y_i
            xhx += np.einsum("bip,biq->pq", xw, xw)
            xhy += np.einsum("bip,bim->pm", xw, yw)
            yhy += np.einsum("bim,bim->m", yw, yw)
        return logdet, xhx, xhy, yhy

    def _intercept_crossprods(
        self, gamma: float, X: np.ndarray, Y: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        logdet, xhx, xhy, yhy = 0.0, X.T @ X, X.T @ Y, np.einsum("nm,nm->m", Y, Y)
        for index, _ in self.groups:
            size = index.shape[1]
            weight = gamma / (1 + size * gamma)
            x_sum, y_sum = X[index].sum(axis=1), Y[index].sum(axis=1)
            logdet += len(index) * np.log1p(size * gamma)
            xhx = xhx - weight * (x_sum.T @ x_sum)
            xhy = xhy - weight * (x_sum.T @ y_sum)
            yhy = yhy - weight * np.einsum("bm,bm->m", y_sum, y_sum)
        return logdet, xhx, xhy, yhy


@dataclass
class Fit:
    """REML fit of one response."""

    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2: float
    component_variances: np.ndarray
    deviance: float
    structure: BlockStructure
    X: np.ndarray
    y: np.ndarray


def _profiled_deviance(theta: np.ndarray, structure: BlockStructure, X: np.ndarray, y: np.ndarray) -> float:
    """REML criterion (-2 log restricted likelihood) with sigma^2 profiled out; theta = relative SDs."""
    logdet, xhx, xhy, yhy = structure.crossprods(theta**2, X, y[:, None])
    chol = np.linalg.cholesky(xhx)
    beta_part = np.linalg.solve(chol, xhy[:, 0])
    rss = yhy[0] - beta_part @ beta_part
    dof = structure.n - structure.p
    return dof * (1 + LOG_2PI + np.log(rss / dof)) + logdet + 2 * np.log(np.diag(chol)).sum()


def fit_reml(design: Design, y: np.ndarray, structure: BlockStructure | None = None) -> Fit:
    """REML estimates of beta, their covariance and the variance components for one response."""
    return fit_reml_many(design, y[:, None], structure)[0]


def fit_reml_many(design: Design, Y: np.ndarray, structure: BlockStructure | None = None) -> list[Fit]:
    """``fit_reml`` of every column of ``Y``, their variance components searched for all at once.

    The relative SDs come from ``relative_sds``, the same search as ``fit_reml_batch`` uses (so the
    real gene set and the random sets are fitted by one function).
    """
    structure = structure or BlockStructure(design)
    Y = np.asarray(Y, dtype=float)
    fits = []
    for theta, y in zip(relative_sds(design, Y, structure), Y.T):
        gamma = theta**2
        _, xhx, xhy, yhy = structure.crossprods(gamma, design.X, y[:, None])
        xhx_inv = np.linalg.inv(xhx)
        beta = xhx_inv @ xhy[:, 0]
        sigma2 = float((yhy[0] - beta @ xhy[:, 0]) / (structure.n - structure.p))
        try:
            deviance = float(_profiled_deviance(theta, structure, design.X, y))
        except np.linalg.LinAlgError:
            deviance = np.inf
        fits.append(
            Fit(
                beta=beta,
                cov_beta=sigma2 * xhx_inv,
                sigma2=sigma2,
                component_variances=sigma2 * gamma,
                deviance=deviance,
                structure=structure,
                X=design.X,
                y=y,
            )
        )
    return fits


GOLDEN_STEPS = 50  # golden-section steps in a bracket of +/- GRID_STEP around the best grid point: ~1e-11
GRID_STEP = 0.2  # log10(theta) grid over [-6, 3]: small-sample REML criteria can have several minima


def relative_sds(design: Design, Y: np.ndarray, structure: BlockStructure | None = None) -> np.ndarray:
    """REML relative SDs of the random effects (responses x components) for every column of ``Y``.

    One random intercept: the criterion of every response is evaluated at once from block sums, on a
    grid of log10(theta) over [-6, 3] and at theta = 0 (a local search alone can stop in the wrong one
    of several minima, which small trials do have), then refined by golden section around the best grid
    point. Nested components (crossover): closed-form block inverses (``_NestedSums``) and a vectorized
    projected Newton search from a grid (``_projected_newton``), which also leaves the bound
    theta = 0, where the criterion is flat in theta.
    """
    structure = structure or BlockStructure(design)
    Y = np.asarray(Y, dtype=float)
    m = Y.shape[1]
    if not design.components:  # one draw per participant: no random effect, ordinary least squares
        return np.zeros((m, 0))
    if len(design.components) == 1:
        sums = _InterceptSums(structure, design.X, Y)
        return _grid_golden_log_theta(lambda values: sums.deviance(values[:, None]), m)[:, None]
    sums = _NestedSums(structure, design.X, Y, design)
    return np.sqrt(_projected_newton(sums.criterion, m, len(design.components)))


def fit_reml_batch(
    design: Design, Y: np.ndarray, structure: BlockStructure | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """REML fits of many responses (columns of ``Y``), each with its own variance components.

    Returns beta (responses x p) and its covariance (responses x p x p), the same numbers as
    ``fit_reml`` per column (both take their variance components from ``relative_sds``).
    """
    structure = structure or BlockStructure(design)
    Y = np.asarray(Y, dtype=float)
    theta = relative_sds(design, Y, structure)
    if not design.components:  # ordinary least squares: one random intercept of variance 0
        return _InterceptSums(structure, design.X, Y).estimates(np.zeros((Y.shape[1], 1)))
    sums = (
        _InterceptSums(structure, design.X, Y)
        if len(design.components) == 1
        else _NestedSums(structure, design.X, Y, design)
    )
    return sums.estimates(theta**2)


NEWTON_GRID = np.array([0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0])  # starting values of each gamma
NEWTON_ITERATIONS = 40


def _projected_newton(deviance, m: int, k: int) -> np.ndarray:
    """Per response, the relative variances gamma >= 0 (responses x k) minimising ``deviance``
    (vectorized over responses): the best point of a grid, then Newton steps with central-difference
    derivatives, components at the bound gamma = 0 with an outward gradient held there, and step
    halving until the criterion does not increase."""
    grid = np.stack(np.meshgrid(*[NEWTON_GRID] * k, indexing="ij"), axis=-1).reshape(-1, k)
    values = np.array([deviance(np.broadcast_to(point, (m, k))) for point in grid])
    gamma = grid[np.argmin(values, axis=0)].copy()
    eye = np.eye(k)
    for _ in range(NEWTON_ITERATIONS):
        f0 = deviance(gamma)
        h = 1e-4 * np.maximum(gamma, 1e-2)  # responses x k
        grad, hess = np.zeros((m, k)), np.zeros((m, k, k))
        for a in range(k):
            up, down = deviance(gamma + h[:, a, None] * eye[a]), deviance(gamma - h[:, a, None] * eye[a])
            grad[:, a] = (up - down) / (2 * h[:, a])
            hess[:, a, a] = (up - 2 * f0 + down) / h[:, a] ** 2
            for b in range(a):
                shift = lambda sa, sb: deviance(gamma + sa * h[:, a, None] * eye[a] + sb * h[:, b, None] * eye[b])  # noqa: E731
                hess[:, a, b] = hess[:, b, a] = (shift(1, 1) - shift(1, -1) - shift(-1, 1) + shift(-1, -1)) / (
                    4 * h[:, a] * h[:, b]
                )
        free = ~((gamma <= 0) & (grad > 0))  # held at the bound: gamma = 0, pushing out
        reduced = np.where(free[:, :, None] & free[:, None, :], hess, eye)
        reduced_grad = np.where(free, grad, 0.0)
        curvature_ok = np.all(np.linalg.eigvalsh(reduced) > 0, axis=1)
        newton = -np.linalg.solve(np.where(curvature_ok[:, None, None], reduced, eye), reduced_grad[:, :, None])[
            :, :, 0
        ]
        diagonal = -reduced_grad / np.maximum(np.abs(np.diagonal(reduced, axis1=1, axis2=2)), 1e-8)
        step = np.where(curvature_ok[:, None], newton, diagonal)
        accepted = np.zeros(m, dtype=bool)
        candidate = gamma
        for _ in range(30):
            trial = np.clip(gamma + step, 0.0, MAX_THETA**2)
            better = ~accepted & (deviance(trial) <= f0)
            candidate = np.where(better[:, None], trial, candidate)
            accepted |= better
            if accepted.all():
                break
            step = np.where(accepted[:, None], step, step / 2)
        moved = np.abs(candidate - gamma).max(axis=1)
        gamma = candidate
        if np.all(moved <= 1e-10 * (1 + gamma.max(axis=1))):
            break
    return gamma


def _grid_golden_log_theta(deviance, m: int) -> np.ndarray:
    """Per response, the theta minimising ``deviance`` (vectorized over responses): the best point of a
    grid of log10(theta) over [-6, 3], golden section within one grid step of it, then theta = 0 if
    that is at least as good."""
    top = np.log10(MAX_THETA)
    grid = np.arange(-6.0, top + GRID_STEP / 2, GRID_STEP)
    values = np.array([deviance(np.full(m, 10.0**u)) for u in grid])
    centre = grid[np.argmin(values, axis=0)]
    low, high = np.clip(centre - GRID_STEP, -6, top), np.clip(centre + GRID_STEP, -6, top)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = deviance(10.0**a), deviance(10.0**b)
    for _ in range(GOLDEN_STEPS):
        left = fa <= fb  # the minimum lies in [low, b]; else in [a, high]
        high, low = np.where(left, b, high), np.where(left, low, a)
        kept, f_kept = np.where(left, a, b), np.where(left, fa, fb)  # the interior point that stays
        new = np.where(left, high - ratio * (high - low), low + ratio * (high - low))
        f_new = deviance(10.0**new)
        a, fa = np.where(left, new, kept), np.where(left, f_new, f_kept)
        b, fb = np.where(left, kept, new), np.where(left, f_kept, f_new)
    theta = np.where(fa <= fb, 10.0**a, 10.0**b)
    return np.where(deviance(np.zeros(m)) <= np.minimum(fa, fb), 0.0, theta)


class _InterceptSums:
    """Block sums of X and Y per block size, for REML of many responses with one random intercept."""

    def __init__(self, structure: BlockStructure, X: np.ndarray, Y: np.ndarray):
        self.n, self.p = X.shape
        self.xtx, self.xty, self.yty = X.T @ X, (X.T @ Y).T, np.einsum("nm,nm->m", Y, Y)
        self.parts = []
        for index, _ in structure.groups:
            x_sum, y_sum = X[index].sum(axis=1), Y[index].sum(axis=1)
            self.parts.append(
                (index.shape[1], len(index), x_sum.T @ x_sum, (x_sum.T @ y_sum).T, np.einsum("bm,bm->m", y_sum, y_sum))
            )

    def crossprods(self, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """log|H|, X'H^-1X, X'H^-1y and y'H^-1y per response, for its own relative variance gamma."""
        logdet = np.zeros(len(gamma))
        xhx = np.broadcast_to(self.xtx, (len(gamma), self.p, self.p)).copy()
        xhy, yhy = self.xty.copy(), self.yty.copy()
        gamma = gamma[:, 0]
        for size, count, xx, xy, yy in self.parts:
            weight = gamma / (1 + size * gamma)
            logdet += count * np.log1p(size * gamma)
            xhx -= weight[:, None, None] * xx
            xhy -= weight[:, None] * xy
            yhy -= weight * yy
        return logdet, xhx, xhy, yhy

    def deviance(self, theta: np.ndarray) -> np.ndarray:
        """The profiled REML criterion of ``_profiled_deviance`` for every response at once
        (``theta``: responses x components)."""
        return self.criterion(theta**2)

    def criterion(self, gamma: np.ndarray) -> np.ndarray:
        """The same at relative variances ``gamma`` (slightly negative values are allowed, for
        central differences at the bound)."""
        logdet, xhx, xhy, yhy = self.crossprods(gamma)
        # one Cholesky factor of [[X'H^-1X, X'H^-1y], [y'H^-1X, y'H^-1y]] gives both terms: its first p
        # diagonal entries are those of X'H^-1X's factor, and the last one squared is the residual sum of squares
        augmented = np.empty((len(gamma), self.p + 1, self.p + 1))
        augmented[:, : self.p, : self.p] = xhx
        augmented[:, : self.p, self.p] = augmented[:, self.p, : self.p] = xhy
        augmented[:, self.p, self.p] = yhy
        try:
            diagonal = np.diagonal(np.linalg.cholesky(augmented), axis1=1, axis2=2)
        except np.linalg.LinAlgError:  # numerically singular far out in theta (or an exact fit): those responses only
            return np.array([self._one_criterion(*parts) for parts in zip(logdet, xhx, xhy, yhy)])
        dof = self.n - self.p
        rss = diagonal[:, self.p] ** 2
        log_diag = np.log(diagonal[:, : self.p]).sum(axis=1)
        return dof * (1 + LOG_2PI + np.log(rss / dof)) + logdet + 2 * log_diag

    def _one_criterion(self, logdet: float, xhx: np.ndarray, xhy: np.ndarray, yhy: float) -> float:
        """One response's criterion, 1e300 where X'H^-1X is numerically singular (as in fit_reml)."""
        try:
            chol = np.linalg.cholesky(xhx)
        except np.linalg.LinAlgError:
            return 1e300
        part = np.linalg.solve(chol, xhy)
        dof = self.n - self.p
        return float(dof * (1 + LOG_2PI + np.log((yhy - part @ part) / dof)) + logdet + 2 * np.log(np.diag(chol)).sum())

    def estimates(self, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """beta and its covariance per response at its relative variances."""
        _, xhx, xhy, yhy = self.crossprods(gamma)
        inverse = np.linalg.inv(xhx)
        beta = np.einsum("mpq,mq->mp", inverse, xhy)
        sigma2 = (yhy - np.einsum("mp,mp->m", beta, xhy)) / (self.n - self.p)
        return beta, sigma2[:, None, None] * inverse


class _NestedSums(_InterceptSums):
    """The same criterion for a participant intercept with participant:period intercepts nested in it.

    Per participant block, H = I + g1 11' + g2 sum_p J_p: with D = I + g2 sum_p J_p,
    D^-1 = I - sum_p w_p J_p (w_p = g2 / (1 + m_p g2)), D^-1 1 = s_p on period p (s_p = 1 / (1 + m_p g2)),
    and Sherman-Morrison gives H^-1 = D^-1 - f (D^-1 1)(D^-1 1)' with f = g1 / (1 + g1 sum_p m_p s_p),
    log|H| = sum_p log(1 + m_p g2) + log(1 + g1 sum_p m_p s_p). So only per-period sums of X and Y
    are needed, and every response's criterion costs a few small products.
    """

    def __init__(self, structure: BlockStructure, X: np.ndarray, Y: np.ndarray, design: Design):
        self.n, self.p = X.shape
        self.xtx, self.xty, self.yty = X.T @ X, (X.T @ Y).T, np.einsum("nm,nm->m", Y, Y)
        person, unit = design.components
        units = np.unique(unit)
        owner = np.zeros(len(units), dtype=int)
        owner[unit] = person
        slot = np.asarray(pd.Series(owner).groupby(owner).cumcount())
        shape = (person.max() + 1, slot.max() + 1)
        self.sizes = np.zeros(shape)
        np.add.at(self.sizes, (owner[unit], slot[unit]), 1.0)
        self.x = np.zeros((*shape, self.p))
        np.add.at(self.x, (owner[unit], slot[unit]), X)
        self.y = np.zeros((*shape, Y.shape[1]))
        np.add.at(self.y, (owner[unit], slot[unit]), Y)
        self.y = np.moveaxis(self.y, -1, 0)  # responses x participants x periods
        self.x_flat = self.x.reshape(-1, self.p)
        self.xx_flat = np.einsum("ui,uj->uij", self.x_flat, self.x_flat).reshape(len(self.x_flat), -1)

    def crossprods(self, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        m = len(gamma)
        g1, g2 = gamma[:, 0, None], gamma[:, 1, None, None]
        sizes = self.sizes[None]  # 1 x participants x periods
        w = (g2 / (1 + sizes * g2)).reshape(m, -1)  # responses x units
        s = 1 / (1 + sizes * g2)
        c = (sizes * s).sum(axis=2)  # responses x participants
        f = g1 / (1 + g1 * c)
        logdet = np.log1p(sizes * g2).reshape(m, -1).sum(axis=1) + np.log1p(g1 * c).sum(axis=1)
        v = np.einsum("mbp,bpi->mbi", s, self.x, optimize=True)
        vy = (s * self.y).sum(axis=2)
        y_flat = self.y.reshape(m, -1)
        xhx = (
            self.xtx[None]
            - (w @ self.xx_flat).reshape(m, self.p, self.p)
            - np.matmul((f[:, :, None] * v).transpose(0, 2, 1), v)
        )
        xhy = self.xty - (w * y_flat) @ self.x_flat - np.einsum("mb,mbi->mi", f * vy, v)
        yhy = self.yty - (w * y_flat * y_flat).sum(axis=1) - (f * vy * vy).sum(axis=1)
        return logdet, xhx, xhy, yhy


def _deviance_at(variances: np.ndarray, fit: Fit) -> float:
    """Full REML deviance at variance parameters (sigma^2, component variances...)."""
    sigma2, gamma = variances[0], variances[1:] / variances[0]
    logdet, xhx, xhy, yhy = fit.structure.crossprods(gamma, fit.X, fit.y[:, None])
    beta = np.linalg.solve(xhx, xhy[:, 0])
    rhr = yhy[0] - beta @ xhy[:, 0]
    dof = fit.structure.n - fit.structure.p
    return dof * (LOG_2PI + np.log(sigma2)) + logdet + np.linalg.slogdet(xhx)[1] + rhr / sigma2


def _cov_beta_at(variances: np.ndarray, fit: Fit) -> np.ndarray:
    sigma2, gamma = variances[0], variances[1:] / variances[0]
    _, xhx, _, _ = fit.structure.crossprods(gamma, fit.X, fit.y[:, None])
    return sigma2 * np.linalg.inv(xhx)


def satterthwaite_df(fit: Fit, contrasts: np.ndarray) -> np.ndarray:
    """Satterthwaite df for each row of ``contrasts`` (lmerTest's method).

    Variance parameters on the boundary (a component estimated at 0) are held fixed, which is what
    the theta parametrisation implies there (the deviance is flat in that direction).
    """
    if not len(fit.component_variances):  # ordinary least squares: exactly n - p
        return np.full(len(contrasts), float(fit.structure.n - fit.structure.p))
    full = np.concatenate([[fit.sigma2], fit.component_variances])
    free = np.flatnonzero(full > 1e-10 * fit.sigma2)
    steps = 1e-4 * full[free]

    def shifted(delta: np.ndarray) -> np.ndarray:
        out = full.copy()
        out[free] += delta
        return out

    m = len(free)
    hessian = np.zeros((m, m))
    f0 = _deviance_at(full, fit)
    for a in range(m):
        for b in range(a, m):
            ea, eb = np.eye(m)[a] * steps[a], np.eye(m)[b] * steps[b]
            if a == b:
                value = (_deviance_at(shifted(ea), fit) - 2 * f0 + _deviance_at(shifted(-ea), fit)) / steps[a] ** 2
            else:
                value = (
                    _deviance_at(shifted(ea + eb), fit)
                    - _deviance_at(shifted(ea - eb), fit)
                    - _deviance_at(shifted(eb - ea), fit)
                    + _deviance_at(shifted(-ea - eb), fit)
                ) / (4 * steps[a] * steps[b])
            hessian[a, b] = hessian[b, a] = value
    vcov_var = 2 * np.linalg.inv(hessian)
    grads = np.zeros((len(contrasts), m))
    for a in range(m):
        e = np.eye(m)[a] * steps[a]
        up, down = _cov_beta_at(shifted(e), fit), _cov_beta_at(shifted(-e), fit)
        grads[:, a] = (
            np.einsum("cp,pq,cq->c", contrasts, up, contrasts) - np.einsum("cp,pq,cq->c", contrasts, down, contrasts)
        ) / (2 * steps[a])
    variance = np.einsum("cp,pq,cq->c", contrasts, fit.cov_beta, contrasts)
    return 2 * variance**2 / np.einsum("ca,ab,cb->c", grads, vcov_var, grads)


# ----------------------------------------------------------------------------------------------
# Contrasts
# ----------------------------------------------------------------------------------------------


@dataclass
class ContrastSpec:
    contrast: str
    arm: str
    time: str
    vector: np.ndarray
    samples: np.ndarray
    term: str = ""  # association studies: the design column (predictor, or predictor[T.level]) tested


def contrast_specs(design: Design) -> list[ContrastSpec]:
    """Each non-control arm x non-baseline time (vs control's change), then each arm's own change
    (in a crossover averaged over periods with equal weight: with period x time in the model the time
    coefficient alone is the change in the first period). An association design's contrasts are its
    predictor terms (``ctra.models.association.association_specs``)."""
    if design.kind == "association":
        from .association import association_specs

        return association_specs(design)
    index = {c: i for i, c in enumerate(design.columns)}
    control, baseline = design.arms[0], design.times[0]
    specs = []

    def vector(*names: str) -> np.ndarray:
        v = np.zeros(len(design.columns))
        for name in names:
            v[index[name]] = 1.0
        return v

    def involved(arms: list[str], time: str) -> np.ndarray:
        return np.isin(design.arm_of_sample, arms) & np.isin(design.time_of_sample, [baseline, time])

    if len(design.arms) > 1:
        for arm in design.arms[1:]:
            for time in design.times[1:]:
                specs.append(
                    ContrastSpec(
                        "arm_x_time", arm, time, vector(interaction_column(arm, time)), involved([control, arm], time)
                    )
                )
    for arm in design.arms:
        for time in design.times[1:]:
            names = [time_column(time)] + ([interaction_column(arm, time)] if arm != control else [])
            change = vector(*names)
            # crossover: the change averaged over periods (the reference period has no period x time term)
            period_time = [
                index[c] for c in design.columns if c.startswith("period[") and c.endswith(f":{time_column(time)}")
            ]
            change[period_time] = 1.0 / (len(period_time) + 1)
            specs.append(ContrastSpec("change", arm, time, change, involved([arm], time)))
    return specs


def contrast_table(fit: Fit, design: Design, specs: list[ContrastSpec]) -> pd.DataFrame:
    """estimate, se, 95% CI, Satterthwaite df and p for each contrast of one fit."""
    L = np.array([s.vector for s in specs])
    estimate = L @ fit.beta
    se = np.sqrt(np.einsum("cp,pq,cq->c", L, fit.cov_beta, L))
    return contrast_rows(design, specs, estimate, se, satterthwaite_df(fit, L))


def contrast_rows(
    design: Design, specs: list[ContrastSpec], estimate: np.ndarray, se: np.ndarray, df: np.ndarray
) -> pd.DataFrame:
    """The contrast rows of every model: each contrast's estimate, se, 95% CI and two-sided p on a t
    reference with ``df`` (NaN: no CI, no p), and the participants and samples it involves."""
    t_crit = stdtrit(df, 0.975)
    with np.errstate(invalid="ignore"):
        p_value = 2 * stdtr(df, -np.abs(estimate / se))
    participants = np.asarray(design.participant)
    terms = {"term": [s.term for s in specs]} if any(s.term for s in specs) else {}
    return pd.DataFrame(
        {
            "contrast": [s.contrast for s in specs],
            "arm": [s.arm for s in specs],
            "time": [s.time for s in specs],
            **terms,
            "estimate": estimate,
            "se": se,
            "ci_low": estimate - t_crit * se,
            "ci_high": estimate + t_crit * se,
            "df": df,
            "p_value": p_value,
            "n_participants": [len(np.unique(participants[s.samples])) for s in specs],
            "n_samples": [int(s.samples.sum()) for s in specs],
        }
    )


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (step-up, monotone, capped at 1)."""
    p = np.asarray(p, dtype=float)
    n = len(p)
    order = np.argsort(p, kind="stable")
    ranked = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return out


# ----------------------------------------------------------------------------------------------
# One study: all scores and all used genes
# ----------------------------------------------------------------------------------------------

SCORES = SCORE_NAMES
DF_METHOD = "Satterthwaite (as lmerTest), REML"


def _score_fits(design: Design, scores: pd.DataFrame):
    """(score, REML fit) for every score column that has values, sharing one block structure."""
    names = [s for s in SCORES if s in scores and not scores[s].isna().all()]
    fits = fit_reml_many(design, scores[names].to_numpy(dtype=float)) if names else []
    yield from zip(names, fits)


def _relative_variances(fit: Fit) -> list[float]:
    return (fit.component_variances / fit.sigma2).tolist()


def fit_scores(design: Design, scores: pd.DataFrame, model: str) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """Contrast rows for every score column that has values, and each fit's relative variances.

    The relative variances (component variance / residual variance) let the robustness checks
    reuse the fitted covariance structure in closed-form refits.
    """
    specs = contrast_specs(design)
    tables, gammas = [], {}
    for score, fit in _score_fits(design, scores):
        table = contrast_table(fit, design, specs)
        table.insert(0, "score", score)
        table.insert(1, "model", model)
        tables.append(table)
        gammas[score] = _relative_variances(fit)
    return pd.concat(tables, ignore_index=True), gammas


def relative_variances(design: Design, scores: pd.DataFrame) -> dict[str, list[float]]:
    """Each score's REML variance components over its residual variance (as ``fit_scores`` records
    them), for the checks that refit with fixed variance components without waiting for the model."""
    return {score: _relative_variances(fit) for score, fit in _score_fits(design, scores)}


def fit_genes(design: Design, adata, usage: pd.DataFrame) -> pd.DataFrame:
    """The same contrasts per used gene on its VST, with BH FDR within each contrast."""
    structure = BlockStructure(design)
    specs = contrast_specs(design)
    used = set_genes(usage)
    vst = np.asarray(adata[:, used["gene"].tolist()].layers["vst"], dtype=float)
    tables = []
    fits = fit_reml_many(design, vst, structure)
    for fit, record in zip(fits, used.itertuples(index=False)):
        table = contrast_table(fit, design, specs)
        table.insert(0, "gene", record.gene)
        table.insert(1, "group", record.group)
        table.insert(2, "direction", int(record.direction))
        tables.append(table)
    genes = pd.concat(tables, ignore_index=True)
    keys = ["contrast", "arm", "time"] + (["term"] if "term" in genes else [])
    genes["fdr"] = genes.groupby(keys, sort=False)["p_value"].transform(lambda p: benjamini_hochberg(p.to_numpy()))
    return genes.drop(columns=["n_participants"])


def fit_study(
    adata, scores: pd.DataFrame, usage: pd.DataFrame, settings: ModelSettings
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """contrasts.tsv, genes.tsv and the model description for the report's methods."""
    scores = scores.set_index("sample").loc[adata.obs_names]
    design, marker_genes = study_design(adata, usage, settings.design)
    contrasts, gammas = fit_scores(design, scores, "lmm")
    genes = fit_genes(design, adata, usage)
    base, _ = study_design(adata, usage, settings.design, covariates=False, markers=False)
    info = {
        "formula": design.formula,
        "coefficients": design.columns,
        "df_method": DF_METHOD,
        "primary": (
            association_endpoint(settings.primary, design.terms)
            if design.kind == "association"
            else primary_endpoint(settings.primary, len(design.arms) > 1)
        ),
        "adjustment": {
            "columns": design.X.shape[1] - base.X.shape[1],
            "residual_df_without": int(len(design.X) - base.X.shape[1]),
            "participants": int(design.participant.max() + 1),
        },
        "covariate_warnings": list(adata.uns.get("covariate_warnings", [])),
        "markers_note": marker_decision(adata, usage, settings.design)[1],
        "covariates": list(settings.design.covariates),
        "markers_used": marker_genes,
        **(
            {
                "design": "association",
                "predictors": list(settings.design.predictors),
                "terms": [column for _, column in design.terms],
                "predictor_scales": design.scales,
                "random_intercept": bool(design.components),
            }
            if design.kind == "association"
            else {
                "reference_levels": {"arm": design.arms[0], "time": design.times[0]},
                "levels": {"arm": design.arms, "time": design.times},
            }
        ),
        "normalization": adata.uns.get("normalization", {}),
        "relative_variances": gammas,
        "variance_components": design.component_names,
    }
    return contrasts, genes, info
