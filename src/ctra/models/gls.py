"""GLS with fixed variance components: whitening by participant block, batched solves, many responses at once.

With the relative variance components of a REML fit held fixed, the mixed model is a GLS problem;
the safeguards (permutation test, leave-one-out) refit it thousands of times in closed form.
"""

from __future__ import annotations

import numpy as np

from .mixed import BlockStructure
from ..design import Design

MAX_CONDITION = 1e12  # a design this ill-conditioned is treated as singular


class Whitener:
    """Applies H^-1/2 (inverse Cholesky factor per participant block) for fixed relative variances."""

    def __init__(self, structure: BlockStructure, gamma: np.ndarray):
        self.parts = []
        for index, same in structure.groups:
            size = index.shape[1]
            H = np.broadcast_to(np.eye(size), (len(index), size, size)).copy()
            for g, s in zip(gamma, same):
                H += g * s
            self.parts.append((index, np.linalg.inv(np.linalg.cholesky(H))))
        self.rows = np.concatenate([index.ravel() for index, _ in self.parts])

    def apply(self, M: np.ndarray) -> np.ndarray:
        """Whiten the sample axis (second to last) of M: shape (..., n, q) -> (..., n, q), rows in ``self.rows`` order."""
        pieces = []
        for index, inv_chol in self.parts:
            block = M[..., index, :]  # (..., B, m, q)
            white = inv_chol @ block  # broadcasts over leading axes
            pieces.append(white.reshape(*M.shape[:-2], -1, M.shape[-1]))
        return np.concatenate(pieces, axis=-2)


def _solve_batched(xtx: np.ndarray, xty: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """beta and (X'X)^-1 per batch item; singular items (e.g. a permutation emptying a cell) get NaN.

    Singularity is judged by the 1-norm condition number, ||A|| ||A^-1||, exact from the inverse
    (an SVD per item would cost more than everything else here); an exactly singular item makes
    the batched inverse fail, and then items are inverted one by one.
    """
    try:
        inverse = np.linalg.inv(xtx)
    except np.linalg.LinAlgError:
        inverse = np.array([_inverse_or_nan(a) for a in xtx])
    with np.errstate(invalid="ignore", over="ignore"):
        condition = np.abs(xtx).sum(axis=1).max(axis=1) * np.abs(inverse).sum(axis=1).max(axis=1)
    ok = np.isfinite(condition) & (condition < MAX_CONDITION)
    beta = np.einsum("bpq,bq->bp", inverse, xty)
    beta[~ok] = np.nan
    return beta, inverse, ok


def _inverse_or_nan(matrix: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        return np.full_like(matrix, np.nan)


def gls_estimates(design: Design, Y: np.ndarray, gamma: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contrast estimates and t for many responses sharing fixed relative variances (one solve).

    Each response keeps its own residual variance, so t is scale-free.
    """
    _, xhx, xhy, yhy = BlockStructure(design).crossprods(gamma, design.X, Y)
    inverse = np.linalg.inv(xhx)
    beta = inverse @ xhy
    sigma2 = (yhy - np.einsum("pm,pm->m", beta, xhy)) / (len(Y) - design.X.shape[1])
    estimate = (L @ beta).T
    se = np.sqrt(sigma2[:, None] * np.einsum("cp,pq,cq->c", L, inverse, L)[None, :])
    return estimate, estimate / se
