"""The association design (``design: association``): how the scores go with continuous or categorical
predictors, in cohorts with one blood draw per participant or several.

Model (lme4 notation)::

    score ~ predictors [+ time] + covariates [+ marker VST] [+ (1 | participant)]

ordinary least squares (df = n - p) when every participant has one draw, a participant random
intercept (REML, Satterthwaite df, as the trial model: ``ctra.models.mixed``) when some have several.
Numeric predictors are centered (and, with ``standardize_predictors``, divided by an SD, ddof = 1: the
estimate is then per SD). The SD of a participant-level predictor (one value per participant) is over
participants, each counted once, so that participants with more draws do not weigh more and the SD is
the between-person one; a time-varying predictor's is over the draws (samples), which mixes within- and
between-person spread. With one draw per participant the two are the same. A categorical predictor is treatment-coded with its
first level (order of appearance) as reference, one term per other level. Each predictor column is a
contrast (``contrast: association``, ``term``: the column). The design matrix is built by
``ctra.design.build_association_design``; this module holds the terms' contrasts and their permutations.

The permutation test of a term is Freedman-Lane's (1983): the residuals of the model without that
predictor are permuted between participants (whole participants, among those with the same draws),
added back to that model's fitted values, and the full model refitted (GLS at the null model's variance
components); the statistic is the term's t. Unlike permuting the predictor itself, it keeps the
predictor's correlation with the covariates, so its size holds when they are correlated (Anderson &
Legendre 1999; Winkler et al. 2014).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .gls import gls_estimates
from .mixed import ContrastSpec, fit_reml
from ..design import Design

PERMUTATION_STREAM = 0  # as ctra.safeguards: one generator per (seed, stream, predictor, draw)
BATCH = 250


def association_specs(design: Design) -> list[ContrastSpec]:
    """One contrast per predictor column: its coefficient (per unit, per SD, or level vs reference)."""
    index = {c: i for i, c in enumerate(design.columns)}
    every = np.ones(len(design.X), dtype=bool)
    return [
        ContrastSpec("association", "", "", np.eye(len(design.columns))[index[column]], every, term=column)
        for _, column in design.terms
    ]


def without_predictor(design: Design, predictor: str) -> Design:
    """The design without one predictor's columns: the null model of that predictor's permutation test."""
    dropped = {column for name, column in design.terms if name == predictor}
    keep = [j for j, c in enumerate(design.columns) if c not in dropped]
    return replace(
        design,
        X=design.X[:, keep],
        columns=[design.columns[j] for j in keep],
        terms=[t for t in design.terms if t[0] != predictor],
    )


def exchangeable_blocks(design: Design) -> tuple[list[np.ndarray], np.ndarray]:
    """Participants whose residual vectors may be exchanged, and each participant's samples in a fixed
    order (participants x slots, -1 where empty): participants with the same draws (same times, or
    the same number of draws when no time is given) form a stratum."""
    person = design.participant
    n_people = person.max() + 1
    order = np.lexsort((np.arange(len(person)), design.time_of_sample, person))
    slot = np.asarray(pd.Series(person[order]).groupby(person[order]).cumcount())
    samples = np.full((n_people, slot.max() + 1), -1)
    samples[person[order], slot] = order
    pattern = [
        tuple(design.time_of_sample[samples[i, samples[i] >= 0]]) + (int((samples[i] >= 0).sum()),)
        for i in range(n_people)
    ]
    codes = pd.factorize(pd.Series(pattern, dtype=object), sort=False)[0]
    return [np.flatnonzero(codes == c) for c in range(codes.max() + 1)], samples


def freedman_lane(
    design: Design, y: np.ndarray, predictor_index: int, seed: int, draws: range
) -> tuple[list[ContrastSpec], np.ndarray, np.ndarray]:
    """Freedman-Lane permutation t of one predictor's terms: (its specs, observed t (1 x terms),
    permuted t (draws x terms)). One seeded generator per draw, so chunks do not change the draws."""
    predictor = list(dict.fromkeys(name for name, _ in design.terms))[predictor_index]
    specs = [s for s in association_specs(design) if (predictor, s.term) in design.terms]
    L = np.array([s.vector for s in specs])
    null = without_predictor(design, predictor)
    fit = fit_reml(null, y)
    gamma = fit.component_variances / fit.sigma2
    fitted = null.X @ fit.beta
    residual = y - fitted
    _, observed = gls_estimates(design, y[:, None], gamma, L)
    strata, samples = exchangeable_blocks(design)
    out = []
    for start in range(draws.start, draws.stop, BATCH):
        batch = range(start, min(start + BATCH, draws.stop))
        Y = np.empty((len(y), len(batch)))
        for column, draw in enumerate(batch):
            rng = np.random.default_rng([seed, PERMUTATION_STREAM, predictor_index, draw])
            source = np.arange(len(samples))
            for members in strata:
                source[members] = members[rng.permutation(len(members))]
            target, origin = samples.ravel(), samples[source].ravel()
            filled = target >= 0
            permuted = np.empty_like(y)
            permuted[target[filled]] = residual[origin[filled]]
            Y[:, column] = fitted + permuted
        out.append(gls_estimates(design, Y, gamma, L)[1])
    null_t = np.concatenate(out) if out else np.empty((0, len(specs)))
    return specs, observed, null_t


def predictors_of(design: Design) -> list[str]:
    return list(dict.fromkeys(name for name, _ in design.terms))
