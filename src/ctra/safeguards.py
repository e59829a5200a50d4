"""The CTRA safeguards: checks a reviewer of a CTRA paper will ask for, computed for every study.

(The other models, gene-level GEE and sensitivity refits, are in ``ctra.models``.)

* permutation test: for each active arm, the arm labels of that arm's and control's participants
  are re-allocated (whole participants move); in a crossover, whole sequences move between
  participants who attended the same periods. The statistic is the contrast's t from the GLS fit
  with the variance components of the null model (the tested arm terms dropped), so the observed
  and every permuted statistic are the same function of the data and the test is exact. All distinct
  allocations are enumerated when there are at most ``permutations`` of them.
* random-gene-set null: gene sets of the same group sizes, each gene replaced by a random expressed
  gene of the same mean-expression decile, scored by the study's score method (``ctra.scoring.SCORE_METHODS``, as the real set)
  and fitted by REML with their own variance components; where the real set's t falls among theirs
  answers "would any 53 genes do?".
* leave-one-participant-out: the largest change of each estimate when one participant is dropped,
  by downdating the GLS normal equations (variance components held at the full-data values).

Random draws use one generator per draw, seeded by ``(seed, stream, [scheme,] draw)``, so results do
not depend on how the draws are split into chunks (cluster jobs) and are identical on rerun.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from .config import NullSettings, RobustnessSettings
from .models.gls import Whitener, _solve_batched, gls_estimates
from .models.mixed import SCORES, BlockStructure, ContrastSpec, contrast_specs, fit_reml, fit_reml_batch
from .design import Design, arm_column, interaction_column, period_levels, study_design, without_arm_terms
from .models.association import freedman_lane, predictors_of
from .genesets import set_genes
from .scoring import DEFAULT_SCORE_METHOD, SCORE_METHODS

PERMUTATION_STREAM, GENE_SET_STREAM = 0, 1
BATCH = 250
TIE_TOLERANCE = 1e-10  # relative: |t| this close to the observed counts as at least as extreme


# ----------------------------------------------------------------------------------------------
# Permutation test
# ----------------------------------------------------------------------------------------------


@dataclass
class PermutationScheme:
    """How arm labels may be re-allocated for one permutation test.

    Parallel design: one scheme per active arm; its participants and the control participants
    exchange arm labels, everyone else keeps theirs. Crossover: one scheme; each participant's label
    is their sequence (arm per period) and sequences move between participants who attended the same
    periods (``strata``), so every allocation is one the design could have produced.
    """

    arm: str | None  # the tested arm; None: every arm moves (crossover)
    labels: np.ndarray  # label code of each moving participant
    strata: np.ndarray  # labels move only within a stratum
    label_arms: np.ndarray  # label code x period slot -> arm code
    sample_mover: np.ndarray  # per sample: index of its participant among the movers, -1 if fixed
    sample_slot: np.ndarray  # per sample: its period slot (0 without periods)
    observed_arms: np.ndarray  # arm code of each sample as observed

    @property
    def n_allocations(self) -> int:
        """Distinct allocations: the product over strata of multinomial coefficients."""
        total = 1
        for stratum in np.unique(self.strata):
            _, counts = np.unique(self.labels[self.strata == stratum], return_counts=True)
            total *= math.factorial(int(counts.sum())) // math.prod(math.factorial(int(c)) for c in counts)
        return total

    def tests(self, spec: ContrastSpec) -> bool:
        return spec.contrast == "arm_x_time" and (self.arm is None or spec.arm == self.arm)

    def sample_arms(self, allocations: np.ndarray) -> np.ndarray:
        """Arm code per sample (allocations x samples) for label allocations (allocations x movers)."""
        out = np.broadcast_to(self.observed_arms, (len(allocations), len(self.observed_arms))).copy()
        moving = self.sample_mover >= 0
        out[:, moving] = self.label_arms[allocations[:, self.sample_mover[moving]], self.sample_slot[moving]]
        return out

    def enumerate(self, draws: range) -> np.ndarray:
        """The allocations numbered ``draws`` of the full enumeration (every distinct allocation, the
        observed one included), in a fixed order."""
        members = [np.flatnonzero(self.strata == s) for s in np.unique(self.strata)]
        per_stratum = [_arrangements(self.labels[m]) for m in members]
        out = np.empty((len(draws), len(self.labels)), dtype=int)
        for row, combination in enumerate(itertools.islice(itertools.product(*per_stratum), draws.start, draws.stop)):
            for m, arrangement in zip(members, combination):
                out[row, m] = arrangement
        return out

    def sample(self, seed: int, scheme_index: int, draws: range) -> np.ndarray:
        """Random allocations (uniform within strata), one seeded generator per draw."""
        out = np.empty((len(draws), len(self.labels)), dtype=int)
        for row, draw in enumerate(draws):
            rng = np.random.default_rng([seed, PERMUTATION_STREAM, scheme_index, draw])
            allocation = self.labels.copy()
            for stratum in np.unique(self.strata):
                members = np.flatnonzero(self.strata == stratum)
                allocation[members] = self.labels[rng.permutation(members)]
            out[row] = allocation
        return out


def _arrangements(labels: np.ndarray) -> list[np.ndarray]:
    """Every distinct ordering of a multiset of labels, in a fixed (lexicographic) order."""
    values, counts = np.unique(labels, return_counts=True)
    out: list[np.ndarray] = []

    def place(free: tuple[int, ...], level: int, current: np.ndarray) -> None:
        if level == len(values) - 1:
            current[list(free)] = values[level]
            out.append(current.copy())
            return
        for chosen in itertools.combinations(free, int(counts[level])):
            current[list(chosen)] = values[level]
            place(tuple(i for i in free if i not in chosen), level + 1, current)

    place(tuple(range(len(labels))), 0, np.empty(len(labels), dtype=int))
    return out


def permutation_schemes(design: Design) -> list[PermutationScheme]:
    """The permutation tests of a study: one per active arm (parallel), or one for all (crossover)."""
    if len(design.arms) < 2:
        return []
    arm_codes = pd.Index(design.arms).get_indexer(design.arm_of_sample)
    person = design.participant
    n_people = person.max() + 1
    if design.period_of_sample is None:
        person_arm = np.zeros(n_people, dtype=int)
        person_arm[person] = arm_codes
        schemes = []
        for code, arm in enumerate(design.arms[1:], start=1):
            movers = np.flatnonzero(np.isin(person_arm, [0, code]))
            index = np.full(n_people, -1)
            index[movers] = np.arange(len(movers))
            schemes.append(
                PermutationScheme(
                    arm=arm,
                    labels=person_arm[movers],
                    strata=np.zeros(len(movers), dtype=int),
                    label_arms=np.arange(len(design.arms))[:, None],
                    sample_mover=index[person],
                    sample_slot=np.zeros(len(person), dtype=int),
                    observed_arms=arm_codes,
                )
            )
        return schemes
    slot = pd.Index(period_levels(pd.Series(design.period_of_sample))).get_indexer(design.period_of_sample)
    sequence = np.full((n_people, slot.max() + 1), -1)
    sequence[person, slot] = arm_codes
    label_rows, labels = np.unique(sequence, axis=0, return_inverse=True)
    _, strata = np.unique(sequence >= 0, axis=0, return_inverse=True)
    return [
        PermutationScheme(
            arm=None,
            labels=labels.ravel(),
            strata=strata.ravel(),
            label_arms=label_rows,
            sample_mover=person,
            sample_slot=slot,
            observed_arms=arm_codes,
        )
    ]


def null_relative_variances(design: Design, y: np.ndarray, scheme: PermutationScheme) -> np.ndarray:
    """Relative variance components of the permutation test's null model: the REML fit without the
    arm terms that the scheme's allocations change."""
    null = without_arm_terms(design, None if scheme.arm is None else [scheme.arm])
    fit = fit_reml(null, y)
    return fit.component_variances / fit.sigma2


class PermutedColumns:
    """The whitened arm and arm x time columns of any arm assignment of the randomisation units.

    Such a column is a sum over units of (the unit's samples [at time t]) x (unit has arm a), and
    whitening is linear and acts within participant blocks (which hold whole units), so each unit's
    whitened indicator vector is computed once; a draw's whitened column is then a sparse product
    ``S_t @ onehot``. No permuted design is built or whitened per draw.
    """

    def __init__(self, design: Design, whitener: Whitener):
        unit = design.components[-1]
        n_units = unit.max() + 1
        first = np.unique(unit, return_index=True)[1]
        owner = design.participant[first]
        slot = np.asarray(pd.Series(owner).groupby(owner).cumcount())  # unit's place within its participant
        unit_at = np.full((owner.max() + 1, slot.max() + 1), -1)
        unit_at[owner, slot] = np.arange(n_units)
        columns = {c: j for j, c in enumerate(design.columns)}
        self.first_sample = first
        # (column index, arm code, time level or None for the arm main effect)
        self.columns = [(columns[arm_column(arm)], a, None) for a, arm in enumerate(design.arms[1:], start=1)]
        self.columns += [
            (columns[interaction_column(arm, time)], a, time)
            for a, arm in enumerate(design.arms[1:], start=1)
            for time in design.times[1:]
        ]
        self.fixed = [j for j in range(design.X.shape[1]) if j not in {c for c, _, _ in self.columns}]
        rows_owner = design.participant[whitener.rows]
        self.unit_columns = {}
        for time in {t for _, _, t in self.columns}:
            in_time = np.ones(len(unit)) if time is None else (design.time_of_sample == time).astype(float)
            slots = np.zeros((len(unit), unit_at.shape[1]))
            slots[np.arange(len(unit)), slot[unit]] = in_time
            white = whitener.apply(slots)  # (n, slots), whitened row order
            units = unit_at[rows_owner]  # the unit in each slot of each row's block
            row, k = np.nonzero(units >= 0)
            self.unit_columns[time] = sparse.csr_matrix(
                (white[row, k], (row, units[row, k])), shape=(len(unit), n_units)
            )

    def whitened(self, arm_codes: np.ndarray) -> list[np.ndarray]:
        """Per permuted column, the whitened column of every draw (n x draws)."""
        unit_arms = arm_codes[:, self.first_sample].T  # units x draws
        return [self.unit_columns[time] @ (unit_arms == a).astype(float) for _, a, time in self.columns]


def permutation_null(
    design: Design, y: np.ndarray, gamma: np.ndarray, specs: list[ContrastSpec], arm_codes: np.ndarray
) -> np.ndarray:
    """t of each contrast under each permuted arm assignment (draws x contrasts), GLS with fixed
    variance components: X'H^-1X and X'H^-1y of each draw assembled from the fixed columns' part
    (computed once) and the permuted columns' part (``PermutedColumns``), then one batched solve."""
    whitener = Whitener(BlockStructure(design), gamma)
    permuted = PermutedColumns(design, whitener)
    fixed_white = whitener.apply(design.X[:, permuted.fixed])
    y_white = whitener.apply(y[:, None])[:, 0]
    order = permuted.fixed + [c for c, _, _ in permuted.columns]  # xtx below is in this column order
    L = np.array([s.vector for s in specs])[:, order]
    n, p = design.X.shape
    n_fixed = len(permuted.fixed)
    out = []
    for start in range(0, len(arm_codes), BATCH):
        # draws x n x k: each draw's permuted columns, so that the products below are matrix products
        moving = np.stack(permuted.whitened(arm_codes[start : start + BATCH]), axis=-1).transpose(1, 0, 2)
        draws = moving.shape[0]
        xtx = np.empty((draws, p, p))
        xtx[:, :n_fixed, :n_fixed] = fixed_white.T @ fixed_white
        cross = fixed_white.T @ moving  # draws x fixed x k
        xtx[:, :n_fixed, n_fixed:] = cross
        xtx[:, n_fixed:, :n_fixed] = cross.transpose(0, 2, 1)
        xtx[:, n_fixed:, n_fixed:] = moving.transpose(0, 2, 1) @ moving
        xty = np.concatenate([np.broadcast_to(fixed_white.T @ y_white, (draws, n_fixed)), y_white @ moving], axis=1)
        beta, inverse, _ = _solve_batched(xtx, xty)
        sigma2 = (y_white @ y_white - np.einsum("dp,dp->d", beta, xty)) / (n - p)
        var = sigma2[:, None] * np.einsum("cp,dpq,cq->dc", L, inverse, L)
        out.append((beta @ L.T) / np.sqrt(var))
    return np.concatenate(out) if out else np.empty((0, len(specs)))


def empirical_p(observed: np.ndarray, null: np.ndarray, exact: bool = False) -> np.ndarray:
    """Two-sided p per column from null statistics (draws x columns; NaN draws are not counted).

    Monte Carlo draws: (1 + #|null| >= |obs|) / (1 + #valid draws). Exact enumeration (the observed
    allocation is one of the draws): #|null| >= |obs| / #valid draws.
    """
    valid = ~np.isnan(null)
    bound = np.abs(observed)[None, :] * (1 - TIE_TOLERANCE) - 1e-12
    exceed = (np.abs(null) >= bound) & valid
    if exact:
        return exceed.sum(axis=0) / np.maximum(valid.sum(axis=0), 1)
    return (1 + exceed.sum(axis=0)) / (1 + valid.sum(axis=0))


# ----------------------------------------------------------------------------------------------
# Random gene sets matched on expression decile
# ----------------------------------------------------------------------------------------------


def gene_set_draws(
    var: pd.DataFrame, usage: pd.DataFrame, seed: int, draws: range
) -> tuple[np.ndarray | None, pd.DataFrame, str]:
    """Indices into ``var`` (draws x used genes) of decile-matched random genes replacing each used
    gene, the used genes, and why there are no draws ('' when there are).

    The pool is every expressed gene outside the gene sets and markers; deciles are of the mean VST
    (``var['expressed']`` and ``var['vst_mean']``, from ``ctra.scoring.gene_summaries``). Without a
    pool (an input holding only the set and marker genes) there is no random-gene-set null.
    """
    used = set_genes(usage).reset_index(drop=True)
    pool = np.flatnonzero(var["expressed"].to_numpy(bool) & (var["group"].to_numpy() == ""))
    if len(pool) < 10 * len(used):
        return (
            None,
            used,
            (
                f"no random gene sets: {len(pool)} expressed genes outside the set and markers, fewer "
                f"than 10 per used gene ({len(used)})"
            ),
        )
    means = var["vst_mean"].to_numpy(float)
    edges = np.quantile(means[pool], np.linspace(0.1, 0.9, 9))
    pool_bin = np.searchsorted(edges, means[pool], side="right")
    used_bin = np.searchsorted(edges, means[var.index.get_indexer(used["gene"])], side="right")
    out = np.empty((len(draws), len(used)), dtype=int)
    for row, draw in enumerate(draws):
        rng = np.random.default_rng([seed, GENE_SET_STREAM, draw])
        for b in np.unique(used_bin):
            slots = np.flatnonzero(used_bin == b)
            candidates = pool[pool_bin == b]
            out[row, slots] = rng.choice(candidates, len(slots), replace=len(candidates) < len(slots))
    return out, used, ""


def random_set_scores(
    adata, picks: np.ndarray, used: pd.DataFrame, method: str = DEFAULT_SCORE_METHOD
) -> dict[str, np.ndarray]:
    """Scores (samples x draws) of each random set, by the study's score method (``ctra.scoring.SCORE_METHODS``:
    the real set's groups and directions, the random set's genes)."""
    score_set = SCORE_METHODS[method]
    vst = adata.layers["vst"]
    directions = used["direction"].to_numpy(float)
    groups = used["group"].to_numpy()
    out = {score: np.empty((adata.n_obs, len(picks))) for score in SCORES}
    for row, genes in enumerate(picks):
        for score, values in score_set(np.asarray(vst[:, genes], dtype=float), directions, groups).items():
            out[score][:, row] = values
    return out


def reml_t(design: Design, Y: np.ndarray, L: np.ndarray) -> np.ndarray:
    """t of each contrast (responses x contrasts) from each response's own REML fit."""
    beta, cov = fit_reml_batch(design, Y)
    return (beta @ L.T) / np.sqrt(np.einsum("cp,mpq,cq->mc", L, cov, L))


# ----------------------------------------------------------------------------------------------
# Leave one participant out
# ----------------------------------------------------------------------------------------------


def leave_one_out(design: Design, y: np.ndarray, gamma: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Contrast estimates with each participant left out (participants x contrasts)."""
    whitener = Whitener(BlockStructure(design), gamma)
    Xw = whitener.apply(design.X)
    yw = whitener.apply(y[:, None])[:, 0]
    owner = design.participant[whitener.rows]
    n_people, p = owner.max() + 1, design.X.shape[1]
    A = np.zeros((n_people, p, p))
    b = np.zeros((n_people, p))
    np.add.at(A, owner, Xw[:, :, None] * Xw[:, None, :])
    np.add.at(b, owner, Xw * yw[:, None])
    beta, _, _ = _solve_batched(A.sum(axis=0)[None] - A, b.sum(axis=0)[None] - b)
    return beta @ L.T


# ----------------------------------------------------------------------------------------------
# Null draws (chunkable) and the final table
# ----------------------------------------------------------------------------------------------


def _chunk(total: int, chunk: int, n_chunks: int) -> range:
    bounds = np.linspace(0, total, n_chunks + 1).round().astype(int)
    return range(bounds[chunk], bounds[chunk + 1])


def _tidy(
    values: np.ndarray, kind: str, score: str, specs: list[ContrastSpec], draws: range | list[int]
) -> pd.DataFrame:
    frame = pd.DataFrame(values, columns=range(len(specs)))
    frame["draw"] = list(draws)
    long = frame.melt(id_vars="draw", var_name="spec", value_name="value")
    long.insert(0, "kind", kind)
    long.insert(1, "score", score)
    long["contrast"] = [specs[i].contrast for i in long["spec"]]
    long["arm"] = [specs[i].arm for i in long["spec"]]
    long["time"] = [specs[i].time for i in long["spec"]]
    if any(s.term for s in specs):  # association studies: the term names the row
        long["term"] = [specs[i].term for i in long["spec"]]
        return long[["kind", "score", "contrast", "arm", "time", "term", "draw", "value"]]
    return long[["kind", "score", "contrast", "arm", "time", "draw", "value"]]


def _score_columns(scores: pd.DataFrame) -> list[str]:
    return [score for score in SCORES if score in scores and not scores[score].isna().all()]


def permutation_draws(
    design: Design, scores: pd.DataFrame, permutations: int, seed: int, chunk: int, n_chunks: int
) -> list[pd.DataFrame]:
    """Tidy permutation t of this chunk's share of the allocations, per scheme and score; chunk 0 also
    writes the observed t (kind ``permutation_observed``, same null-model variance components).

    Kind ``permutation_exact`` when every distinct allocation is enumerated (at most ``permutations``
    of them), else ``permutation`` (Monte Carlo, ``permutations`` seeded draws)."""
    if design.kind == "association":
        return association_permutation_draws(design, scores, permutations, seed, chunk, n_chunks)
    specs = contrast_specs(design)
    frames = []
    for index, scheme in enumerate(permutation_schemes(design)):
        tested = [s for s in specs if scheme.tests(s)]
        total = scheme.n_allocations
        exact = total <= permutations
        draws = _chunk(total if exact else permutations, chunk, n_chunks)
        allocations = scheme.enumerate(draws) if exact else scheme.sample(seed, index, draws)
        arm_codes = scheme.sample_arms(allocations)
        L = np.array([s.vector for s in tested])
        for score in _score_columns(scores):
            y = scores[score].to_numpy(float)
            gamma = null_relative_variances(design, y, scheme)
            if len(draws):
                t = permutation_null(design, y, gamma, tested, arm_codes)
                frames.append(_tidy(t, "permutation_exact" if exact else "permutation", score, tested, draws))
            if chunk == 0:
                _, observed = gls_estimates(design, y[:, None], gamma, L)
                frames.append(_tidy(observed, "permutation_observed", score, tested, [0]))
    return frames


def association_permutation_draws(
    design: Design, scores: pd.DataFrame, permutations: int, seed: int, chunk: int, n_chunks: int
) -> list[pd.DataFrame]:
    """An association study's permutation t (Freedman-Lane, ``ctra.models.association``), per predictor
    and score, for this chunk's share of the ``permutations`` seeded draws; chunk 0 also the observed t."""
    draws = _chunk(permutations, chunk, n_chunks)
    frames = []
    for index, _ in enumerate(predictors_of(design)):
        for score in _score_columns(scores):
            tested, observed, null = freedman_lane(design, scores[score].to_numpy(float), index, seed, draws)
            if len(draws):
                frames.append(_tidy(null, "permutation", score, tested, draws))
            if chunk == 0:
                frames.append(_tidy(observed, "permutation_observed", score, tested, [0]))
    return frames


def gene_set_null(
    adata,
    usage: pd.DataFrame,
    design: Design,
    scores: pd.DataFrame,
    gene_sets: int,
    seed: int,
    chunk: int,
    n_chunks: int,
    score_method: str = DEFAULT_SCORE_METHOD,
) -> tuple[list[pd.DataFrame], str]:
    """Tidy t of this chunk's random gene sets (each set's own REML fit), and why there are none."""
    specs = contrast_specs(design)
    draws = _chunk(gene_sets, chunk, n_chunks)
    picks, used, reason = gene_set_draws(adata.var, usage, seed, draws)
    if picks is None or not len(draws):
        return [], reason
    random_scores = random_set_scores(adata, picks, used, score_method)
    L = np.array([s.vector for s in specs])
    return [
        _tidy(reml_t(design, random_scores[score], L), "gene_set", score, specs, draws)
        for score in _score_columns(scores)
    ], ""


NULL_COLUMNS = ["kind", "score", "contrast", "arm", "time", "draw", "value"]


def null_draws(
    adata, scores: pd.DataFrame, usage: pd.DataFrame, settings: NullSettings, chunk: int, n_chunks: int | None = None
) -> pd.DataFrame:
    """Permutation and random-gene-set t for this chunk's share of the draws (tidy; ``n_chunks``
    default ``settings.chunks``); the design is the main model's, so this stage need not wait for the
    model stage."""
    n_chunks = settings.chunks if n_chunks is None else n_chunks
    design, _ = study_design(adata, usage, settings.design)
    frames = permutation_draws(design, scores, settings.permutations, settings.seed, chunk, n_chunks)
    gene_sets, _ = gene_set_null(
        adata, usage, design, scores, settings.gene_sets, settings.seed, chunk, n_chunks, settings.score_method
    )
    frames += gene_sets
    columns = NULL_COLUMNS if design.kind != "association" else [*NULL_COLUMNS[:5], "term", *NULL_COLUMNS[5:]]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def robustness_table(
    adata,
    scores: pd.DataFrame,
    usage: pd.DataFrame,
    settings: RobustnessSettings,
    models: pd.DataFrame,
    gammas: dict,
    nulls: pd.DataFrame,
    var: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """contrasts.tsv before the endpoint columns: the main-model (lmm) rows of ``models`` with
    perm_p, geneset_p and leave-one-out columns added, then its other rows as they are.

    The random-gene-set p compares the main model's t (the real set's own REML fit, as every random
    set's) with the random sets' t; the permutation p compares the permutation test's observed t.
    ``var`` is every gene's annotation (default ``adata.var``), for the reason when there is no
    random-gene-set pool."""
    design, _ = study_design(adata, usage, settings.design)
    specs = contrast_specs(design)
    L = np.array([s.vector for s in specs])
    key = ["score", "contrast", "arm", "time"] + (["term"] if design.kind == "association" else [])
    if design.kind == "association":  # no arm or time: empty cells, read back from the TSVs as NaN
        models, nulls = (frame.fillna({"arm": "", "time": ""}) for frame in (models, nulls))
    people = np.asarray(sorted(set(adata.obs["participant"])))  # the order of design.participant codes
    draws = {k: g.sort_values("draw")["value"].to_numpy() for k, g in nulls.groupby(["kind", *key], sort=False)}
    main_t = models[models["model"] == "lmm"].set_index(key)
    main_t = (main_t["estimate"] / main_t["se"]).to_dict()
    gene_set_reason = _gene_set_reason(adata.var if var is None else var, usage, settings)
    level_note = categorical_level_notes(design)
    extra = []
    for score, gamma in gammas.items():
        y = scores[score].to_numpy(float)
        estimate, _ = gls_estimates(design, y[:, None], np.asarray(gamma), L)
        loo = leave_one_out(design, y, np.asarray(gamma), L) - estimate[0][None, :]
        worst = np.nanargmax(np.abs(loo), axis=0)
        for i, spec in enumerate(specs):
            where = (score, spec.contrast, spec.arm, spec.time) + ((spec.term,) if len(key) > 4 else ())
            row = dict(zip(key, where))
            row.update({"loo_max_change": loo[worst[i], i], "loo_participant": people[worst[i]]})
            row.update(_permutation_columns(draws, where))
            null = draws.get(("gene_set", *where), np.empty(0))
            observed = main_t.get(where, np.nan)
            row["geneset_p"] = empirical_p(np.array([observed]), null[:, None])[0] if len(null) else np.nan
            row["n_gene_sets"] = int(np.sum(~np.isnan(null)))
            notes = [row.pop("perm_note"), level_note.get(spec.term, "")]
            notes += [gene_set_reason] if gene_set_reason else []
            row["note"] = "; ".join(n for n in notes if n)
            extra.append(row)
    is_main = models["model"] == "lmm"
    main = (
        models[is_main]
        .drop(columns=["note"], errors="ignore")
        .merge(pd.DataFrame(extra), on=key, how="left", validate="one_to_one")
    )
    main = main.astype({"n_permutations": "Int64", "n_gene_sets": "Int64"})
    return pd.concat([main, models[~is_main]], ignore_index=True)


def categorical_level_notes(design: Design) -> dict[str, str]:
    """What a categorical predictor's level rows test: ``p_value`` that level against the reference
    level; ``perm_p`` (Freedman-Lane, the residuals of the model without the whole predictor) the
    level's t under the joint null that every level equals the reference."""
    if design.kind != "association":
        return {}
    return {
        column: (
            f"level vs the reference level of {name}: p_value tests this level against the reference; "
            f"perm_p is under the joint null (every level of {name} equal to the reference)"
        )
        for name, column in design.terms
        if column != name
    }


def _permutation_columns(draws: dict, where: tuple) -> dict:
    """perm_p, n_permutations and a note for one main-model row (empty for within-arm changes)."""
    for kind, exact in (("permutation_exact", True), ("permutation", False)):
        null = draws.get((kind, *where))
        if null is not None:
            observed = draws[("permutation_observed", *where)]
            valid = int(np.sum(~np.isnan(null)))
            note = f"perm_p exact: all {len(null)} distinct allocations enumerated" if exact else ""
            if valid < len(null):
                note = "; ".join(n for n in (note, f"{len(null) - valid} allocations not estimable (left out)") if n)
            return {
                "perm_p": empirical_p(observed, null[:, None], exact=exact)[0],
                "n_permutations": valid,
                "perm_note": note,
            }
    return {"perm_p": np.nan, "n_permutations": 0, "perm_note": ""}


def _gene_set_reason(var: pd.DataFrame, usage: pd.DataFrame, settings: RobustnessSettings) -> str:
    if settings.gene_sets == 0:
        return ""
    return gene_set_draws(var, usage, settings.seed, range(0))[2]
