"""One self-contained HTML report per study, readable by a PI and auditable by a reviewer.

The report holds a plain-language summary, the design, QC, score trajectories, a forest plot of the
main-model contrasts, a per-gene heatmap, robustness checks, the methods and the full contrasts table.
It works offline (plotly.js is inlined once), escapes every user-provided string (HTML through jinja2
autoescape, figure JSON so that it cannot close its ``<script>``; plotly's own pseudo-HTML through
entity escaping), never shows individual covariate values and, unless asked, replaces participant ids
by pseudonyms ``anon-001..`` numbered in an order that sorting the ids cannot undo. Two renders of the same inputs are byte-identical
except for the line carrying ``methods["generated"]``.

Figures are built as plain plotly JSON dicts (``{"data": [...], "layout": {...}}``) rather than through
plotly's validated graph objects, which cost seconds at trial scale; every per-sample step is vectorised so
the report scales linearly with the number of samples. Titles are therefore always written in plotly.js's
object form (``{"text": ...}``) and named colour scales are expanded by plotly.py once, at import.
"""

from __future__ import annotations

import html
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import anndata
import jinja2
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.offline
from plotly.subplots import make_subplots
from scipy import linalg
from scipy.special import stdtrit  # Student t quantile (scipy.stats costs ~1 s to import)

from .results import atomic_path
from .genesets import MARKER_GROUP, SCORE_GROUPS, SCORE_NAMES
from .endpoints import AS_PUBLISHED_MODELS
from .models import OTHER_MODELS
from .models.gee import MIN_GEE_DF, MIN_GEE_PARTICIPANTS

if TYPE_CHECKING:
    from .config import ReportSettings

SCORES = SCORE_NAMES
SCORE_LABELS = {"ctra": "CTRA", "inflammatory": "Inflammatory", "antiviral": "Antiviral", "antibody": "Antibody"}
CONTRASTS = ("arm_x_time", "change", "association")
ASSOCIATION_ARM = "all participants"  # an association study has no arms: one group in the QC figures
ONE_DRAW = "draw"  # ... and, without a time column, one time
AS_PUBLISHED_SENTENCE = "As-published per-gene t:"
AS_PUBLISHED_CAVEAT = (
    "anti-conservative (genes are correlated, participants are the unit): not a check. Shown only to "
    "reproduce published numbers."
)
GENE_GROUPS = (*SCORE_GROUPS, MARKER_GROUP)
MAIN_MODEL = "lmm"
STANDARD_COLUMNS = (
    "score",
    "model",
    "role",
    "contrast",
    "arm",
    "time",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "df",
    "p_value",
    "n_participants",
    "n_samples",
)
P_COLUMNS = ("p_value", "p_holm", "fdr")
KEY_COLUMNS = ("participant", "arm", "time", "period", "term")
PCA_GENES = 500
FDR_THRESHOLD = 0.05
ARM_COLOURS = ("#6b6b6b", "#1f6fb4", "#d1495b", "#2a9d5c", "#e08a1e", "#7b4fa0", "#1aa6b7", "#8c564b")
TIME_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "cross", "x", "star", "pentagon")
CONTRAST_COLOURS = {"arm_x_time": "#1f6fb4", "change": "#e08a1e", "association": "#2a9d5c"}
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
TEMPLATE_DIR = Path(__file__).parent / "templates"
AXIS_STYLE = {
    "gridcolor": "#e6e6e6",
    "zerolinecolor": "#bdbdbd",
    "linecolor": "#555",
    "ticks": "outside",
    "automargin": True,
}
PLOT_TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": FONT, "size": 13, "color": "#222"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "xaxis": AXIS_STYLE,
        "yaxis": AXIS_STYLE,
        "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
        "hoverlabel": {"font": {"family": FONT}},
        "legend": {"bgcolor": "rgba(255,255,255,0.8)"},
    }
)
# plain-JSON forms of the shared look, made once by plotly.py (it expands named colour scales the way the
# figures have always shown them; plotly.js's own "RdBu" is a different scale)
TEMPLATE_JSON = json.loads(json.dumps(PLOT_TEMPLATE.to_plotly_json()))
HEATMAP_COLORSCALE = go.layout.Coloraxis(colorscale="RdBu").to_plotly_json()["colorscale"]
VARIANCE_CHUNK = 2048  # genes per block when the PCA has to compute per-gene VST variances itself


@dataclass(frozen=True)
class Levels:
    """Arm and time levels in the study's order (control and baseline first), never alphabetical."""

    arms: list[str]
    times: list[str]

    @property
    def control(self) -> str:
        return self.arms[0]

    @property
    def baseline(self) -> str:
        return self.times[0]


@dataclass(frozen=True)
class Figure:
    """A plotly figure ready for the template: a fixed div id and script-safe JSON."""

    id: str
    json: str
    caption: str


@dataclass(frozen=True)
class Table:
    """A table of pre-formatted cells; ``numeric`` marks right-aligned columns."""

    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]


def render_report(
    study: str,
    adata: anndata.AnnData,
    scores: pd.DataFrame,
    contrasts: pd.DataFrame,
    genes: pd.DataFrame,
    genes_used: pd.DataFrame,
    methods: dict,
    show_participant_ids: bool = False,
    power: pd.DataFrame | None = None,
    mediation: pd.DataFrame | None = None,
) -> str:
    """Return the report as one HTML string (see the module docstring for what it guarantees)."""
    from .report_outcomes import split_rows

    contrasts, outcome_contrasts = split_rows(contrasts)  # outcome and dose rows: their own section
    # within/between rows have no arm or time: empty, not "nan"
    outcome_contrasts = _as_text(
        outcome_contrasts.fillna({c: "" for c in KEY_COLUMNS if c in outcome_contrasts}), KEY_COLUMNS
    )
    association = methods.get("design") == "association"
    if association:  # one group and one time unless the study gives one: the trial sections then read it
        adata, scores, contrasts, genes = _as_association(adata, scores, contrasts, genes)
    scores, contrasts, genes = (_as_text(frame, KEY_COLUMNS) for frame in (scores, contrasts, genes))
    levels = _levels(adata, scores)
    participants = _participant_labels(_participant_ids(adata, scores, contrasts), show_participant_ids)
    samples = _sample_labels(adata.obs, participants, show_participant_ids)
    contrasts = _sort_contrasts(contrasts, levels)
    inputs = ReportInputs(
        adata=adata,
        scores=scores,
        contrasts=contrasts,
        genes=genes,
        genes_used=genes_used,
        methods=methods,
        levels=levels,
        participants=participants,
        samples=samples,
        power=power,
        outcome_contrasts=outcome_contrasts,
        mediation=None if mediation is None else _as_text(mediation, KEY_COLUMNS),
    )
    context = {
        "study": study,
        "summary": _summary_sentences(contrasts, levels),
        "set_description": _set_description(genes_used),
        "plotly_js": plotly.offline.get_plotlyjs(),
        "plot_config": json.dumps(PLOT_CONFIG, sort_keys=True),
    }
    sections = [s for s in SECTIONS if not (association and s.id == "trajectories")]  # one time: no trajectory
    for section in sections:
        context.update(section.build(inputs))
    # an optional section is shown only when its builder found something to show
    context["sections"] = tuple(s for s in sections if not s.optional or context[s.id])
    return _environment().get_template("report.html.j2").render(**context)


@dataclass(frozen=True)
class ReportInputs:
    """What the section builders read: the study's tables, prepared once by ``render_report``."""

    adata: anndata.AnnData
    scores: pd.DataFrame
    contrasts: pd.DataFrame  # sorted for display
    genes: pd.DataFrame
    genes_used: pd.DataFrame
    methods: dict
    levels: Levels
    participants: dict[str, str]  # id -> label shown
    samples: list[str]  # per-sample labels shown
    power: pd.DataFrame | None = None  # power.tsv (None: not computed)
    outcome_contrasts: pd.DataFrame | None = None  # the outcome and dose rows (ctra.report_outcomes)
    mediation: pd.DataFrame | None = None  # mediation.tsv, for studies with `mediation:`


@dataclass(frozen=True)
class Section:
    """One section of the report: its anchor, its title (contents and heading) and the builder of its
    template variables. The body is the macro of the same name in templates/report_sections.html.j2."""

    id: str
    title: str
    build: Callable[[ReportInputs], dict]
    optional: bool = False  # shown only when the builder's variable of the section's id is truthy


def _trajectories(inputs: ReportInputs) -> dict:
    trajectory_scores = [score for score in SCORES if score in inputs.scores.columns]
    units = _participant_means(inputs.scores, trajectory_scores, inputs.levels) if trajectory_scores else None
    return {
        "trajectories": [
            _trajectory_figure(score, units, inputs.levels, inputs.participants) for score in trajectory_scores
        ]
    }


def _outcome_section(inputs: ReportInputs) -> dict:
    from .report_outcomes import outcome_context

    return outcome_context(inputs)


SECTIONS = (
    Section(
        "design",
        "Study summary",
        lambda d: {
            "design": _design_table(d.adata.obs, d.levels, d.methods.get("design") == "association"),
            "design_caption": _design_caption(d.methods),
            "predictor_summary": _predictor_summary(d.adata.obs, d.methods),
        },
    ),
    Section(
        "qc",
        "Quality control",
        lambda d: {
            "qc": _qc_figures(d.adata, d.levels, d.samples),
            "genes_used_summary": _genes_used_summary(d.genes_used),
            "genes_used": _genes_used_table(d.genes_used),
        },
    ),
    Section("trajectories", "Score trajectories", _trajectories),
    Section("forest", "Contrasts (forest plot)", lambda d: {"forest": _forest_figure(d.contrasts, d.levels)}),
    Section("outcomes", "Psychological outcomes and mediation", _outcome_section, optional=True),
    Section("genes", "Per-gene effects", lambda d: {"heatmap": _heatmap_figure(d.genes, d.levels)}),
    Section(
        "robustness",
        "Robustness",
        lambda d: {
            "robustness": _robustness_tables(d.contrasts, d.participants),
            "verdicts": _robustness_verdicts(d.contrasts, d.participants),
            "adjustment": _adjustment_sentences(d.methods),
        },
    ),
    Section("power", "Power for the next trial", lambda d: _power_section(d.power), optional=True),
    Section("methods", "Methods", lambda d: {"methods": _methods_context(d.methods)}),
    Section("contrasts", "All contrasts", lambda d: {"contrasts": _contrasts_table(d.contrasts, d.participants)}),
)


def _power_section(power: pd.DataFrame | None) -> dict:
    from .planning_report import power_section  # it builds on this module's machinery

    return power_section(power)


def write_report(path: str | Path, **kwargs: Any) -> None:
    """Render with ``render_report(**kwargs)`` and write atomically, so a failed run leaves no half file."""
    text = render_report(**kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _environment() -> jinja2.Environment:
    """Jinja environment with autoescaping on for every template, and undefined names as errors."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


# ---------------------------------------------------------------- levels, labels and formatting


def _as_text(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Design columns as strings, as in ``adata.obs``: a TSV reader may have parsed time '6' as 6."""
    present = [c for c in columns if c in frame.columns]
    return frame.astype({c: str for c in present}) if present else frame


def _as_association(adata: anndata.AnnData, scores: pd.DataFrame, contrasts: pd.DataFrame, genes: pd.DataFrame):
    """An association study's tables as the report's trial sections read them: every sample in one group
    (``ASSOCIATION_ARM``) at its time (or ``ONE_DRAW``), and empty arm and time cells of the contrasts."""
    obs = adata.obs
    time = obs["time"].astype(str) if "time" in obs else pd.Series(ONE_DRAW, index=obs.index)
    adata.obs = obs.assign(arm=ASSOCIATION_ARM, time=time.to_numpy())
    scores = scores.assign(arm=ASSOCIATION_ARM, time=scores["time"].astype(str) if "time" in scores else ONE_DRAW)
    contrasts, genes = (frame.fillna({"arm": "", "time": ""}) for frame in (contrasts, genes))
    return adata, scores, contrasts, genes


def _target(row: pd.Series) -> str:
    """What a contrast row is about: the arm, or an association study's term."""
    return str(row["term"]) if row["contrast"] == "association" else str(row["arm"])


def _row_keys(frame: pd.DataFrame) -> list[str]:
    """The columns naming a contrast row: score, contrast, arm, time and (association studies) term."""
    return ["score", "contrast", "arm", "time"] + (["term"] if "term" in frame else [])


def _levels(adata: anndata.AnnData, scores: pd.DataFrame) -> Levels:
    """Levels from ``uns["levels"]``, with any value missing there appended in sorted order."""
    declared = adata.uns.get("levels", {})

    def ordered(key: str) -> list[str]:
        first = [str(v) for v in declared.get(key, [])]
        seen = set(adata.obs[key].astype(str)) | set(scores[key].astype(str))
        return first + sorted(seen - set(first))

    return Levels(arms=ordered("arm"), times=ordered("time"))


def _participant_labels(participants: Iterable[str], show: bool) -> dict[str, str]:
    """Map participant id -> shown label: the id itself, or anon-001.. in an order that is stable but not
    the ids' own order (sorted by a hash of the id), so labels cannot be mapped back by sorting the ids."""
    ids = sorted(set(participants), key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    if show:
        return {p: p for p in ids}
    width = max(3, len(str(len(ids))))
    return {p: f"anon-{i:0{width}d}" for i, p in enumerate(ids, start=1)}


def _participant_ids(adata: anndata.AnnData, scores: pd.DataFrame, contrasts: pd.DataFrame) -> list[str]:
    """Every participant id the report could show, including ids named in contrast columns."""
    ids = list(adata.obs["participant"].astype(str)) + list(scores["participant"].astype(str))
    for column in contrasts.columns:
        if column.endswith("_participant"):
            ids += list(contrasts[column].dropna().astype(str))
    return ids


def _sample_labels(obs: pd.DataFrame, participants: dict[str, str], show: bool) -> list[str]:
    """Per-sample labels; hidden ids become 'P003 · post' because sample ids often embed participant ids."""
    if show:
        return [str(s) for s in obs.index]
    parts = [obs["participant"].astype(str).map(participants), obs["time"].astype(str)]
    if "period" in obs.columns:
        parts.append(obs["period"].astype(str))
    labels = [" · ".join(values) for values in zip(*parts)]
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return unique


def _plot_text(values: Iterable[Any]) -> list[str]:
    """Entity-escape strings shown by plotly, which otherwise interprets tags like <b> or <a href>."""
    return [html.escape(str(v), quote=False) for v in values]


def _round4(values: Iterable[Any]) -> list[float | None]:
    """Floats rounded to 4 significant digits (NaN -> None) to keep the embedded JSON compact."""
    return [float(f"{v:.4g}") if np.isfinite(v) else None for v in np.asarray(list(values), dtype=float)]


def _fmt_num(value: Any) -> str:
    """3 significant digits; thousands and above as grouped integers; missing as a dash."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or pd.isna(value):
        return "—"
    if isinstance(value, (int, np.integer)) or (abs(value) >= 1000):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _fmt_p(value: Any) -> str:
    """P-values as 0.0012 (2 significant digits) or <1e-4."""
    if value is None or pd.isna(value):
        return "—"
    return "<1e-4" if value < 1e-4 else f"{value:.2g}"


def _fmt_cell(column: str, value: Any, participants: dict[str, str]) -> str:
    """Format one table cell by column meaning: p-values, participant ids (pseudonymised), numbers, text."""
    if column in P_COLUMNS or column.endswith("_p"):
        return _fmt_p(value)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    if column == "participant" or column.endswith("_participant"):
        return participants[str(value)]
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.number)):
        return _fmt_num(value)
    return str(value)


def _script_safe(text: str) -> str:
    """Make JSON safe inside <script>: no '<', '>', '&' or JS line separators can appear literally."""
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def _figure(fig_id: str, data: list[dict], layout: dict, caption: str) -> Figure:
    """Apply the shared look and serialise plain trace/layout dicts as script-safe JSON under a fixed div id."""
    fig = {"data": data, "layout": {"template": TEMPLATE_JSON, **layout}}
    return Figure(id=fig_id, json=_script_safe(_to_json(fig)), caption=caption)


def _to_json(value: Any) -> str:
    """Compact JSON as plotly writes it: numpy values as plain numbers, NaN and infinities as null."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_json_default)
    except ValueError:  # a non-finite float slipped through: write it as null, as plotly.io.to_json does
        text = json.dumps(value, separators=(",", ":"), default=_json_default)
        return json.dumps(json.loads(text, parse_constant=lambda _: None), separators=(",", ":"))


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays, which the json module does not know, as Python values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _title(text: str) -> dict[str, str]:
    """An axis or legend title in plotly.js's object form (plotly.js 3 dropped plain-string titles)."""
    return {"text": text}


def _arm_colours(levels: Levels) -> dict[str, str]:
    """One colour per arm, by level order, so an arm looks the same in every figure."""
    return {arm: ARM_COLOURS[i % len(ARM_COLOURS)] for i, arm in enumerate(levels.arms)}


def _rank(values: pd.Series, order: Iterable[str]) -> pd.Series:
    """Position of each value in ``order``; unknown values go last."""
    positions = {v: i for i, v in enumerate(order)}
    return values.astype(str).map(positions).fillna(len(positions))


# ---------------------------------------------------------------- summary and design


def _sort_contrasts(contrasts: pd.DataFrame, levels: Levels) -> pd.DataFrame:
    """Rows ordered by score, contrast, arm, time (study level order) and model (main model first)."""
    models = [MAIN_MODEL] + sorted(set(contrasts["model"].astype(str)) - {MAIN_MODEL})
    keys = pd.DataFrame(
        {
            "score": _rank(contrasts["score"], SCORES),
            "contrast": _rank(contrasts["contrast"], CONTRASTS),
            "arm": _rank(contrasts["arm"], levels.arms),
            "time": _rank(contrasts["time"], levels.times),
            "model": _rank(contrasts["model"], models),
        },
        index=contrasts.index,
    )
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return contrasts.loc[order].reset_index(drop=True)


def _primary_rows(contrasts: pd.DataFrame) -> pd.DataFrame:
    """The main model's primary-endpoint rows (``role`` = primary; before that column existed, the
    CTRA arm x time rows, else the CTRA changes)."""
    main = contrasts[contrasts["model"] == MAIN_MODEL]
    if "role" in main:
        return main[main["role"] == "primary"]
    ctra = main[main["score"] == "ctra"]
    kind = "arm_x_time" if (ctra["contrast"] == "arm_x_time").any() else "change"
    return ctra[ctra["contrast"] == kind]


def _summary_sentences(contrasts: pd.DataFrame, levels: Levels) -> list[str]:
    """Plain-language results of the primary endpoint (main model), one per primary test, then one
    sentence on multiplicity and what is exploratory."""
    primary = _primary_rows(contrasts)
    sentences = [_describe(row, row["contrast"], levels) for _, row in primary.iterrows()]
    if not sentences:
        return ["The main model produced no estimate of the primary endpoint."]
    score = SCORE_LABELS.get(primary["score"].iloc[0], primary["score"].iloc[0])
    if len(primary) > 1 and "p_holm" in primary:
        held = [
            f"{_target(row)}{'' if row['contrast'] == 'association' else ' at ' + row['time']}: {_fmt_p(row['p_holm'])}"
            for _, row in primary.iterrows()
        ]
        sentences.append(
            f"The primary endpoint ({score}, {len(primary)} tests) is one family: Holm-adjusted p "
            f"({'; '.join(held)}) keep the chance of any false positive among them at 5%."
        )
    sentences.append(
        "Everything else (subscores, other predictors, within-arm changes, other scores) is exploratory: "
        "unadjusted p-values, to be read as hypothesis-generating."
    )
    return sentences


def _p_phrase(value: Any) -> str:
    """'p = 0.035' or 'p < 1e-4'."""
    text = _fmt_p(value)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


def _describe(row: pd.Series, kind: str, levels: Levels) -> str:
    """One result in words, e.g. 'From pre to post, CTRA in a changed by 0.31 SD less than in control'."""
    size = _fmt_num(abs(row["estimate"]))
    p_phrase = _p_phrase(row["p_value"])
    detail = (
        f"(estimate {_fmt_num(row['estimate'])}; 95% CI {_fmt_num(row['ci_low'])} to "
        f"{_fmt_num(row['ci_high'])}; {p_phrase}; "
        f"{_fmt_num(row['n_participants'])} participants, {_fmt_num(row['n_samples'])} samples)"
    )
    span = f"From {levels.baseline} to {row['time']}"
    score = SCORE_LABELS.get(row["score"], row["score"])
    if kind == "association":
        if not np.isfinite(row["estimate"]):
            return f"The association of {score} with {row['term']} could not be estimated."
        relation = "lower" if row["estimate"] < 0 else "higher"
        return (
            f"{score} was {size} SD {relation} per unit of {row['term']} (per SD if the predictors are "
            f"standardized; at fixed covariates, see Methods) {detail}."
        )
    if not np.isfinite(row["estimate"]):
        return f"{span}, the {score} {kind.replace('_x_', ' × ')} effect in {row['arm']} could not be estimated."
    if kind == "arm_x_time":
        relation = "less" if row["estimate"] < 0 else "more"
        return f"{span}, {score} in {row['arm']} changed by {size} SD {relation} than in {levels.control} {detail}."
    direction = "fell" if row["estimate"] < 0 else "rose"
    return f"{span}, {score} in {row['arm']} {direction} by {size} SD {detail}."


def _design_caption(methods: dict) -> str:
    if methods.get("design") == "association":
        return "Participants / samples analysed (an association study: no arms), per draw time when there is one."
    return "Participants / samples per arm and time point."


def _design_table(obs: pd.DataFrame, levels: Levels, association: bool = False) -> Table:
    """Participants / samples per arm x time, with per-arm and overall totals; an association study
    (no arms) one row, per draw time if there is a time column."""
    if association:
        times = [t for t in levels.times if t != ONE_DRAW]
        cells = [_count_cell(obs[obs["time"].astype(str) == t]) for t in times]
        columns = ["Cohort"] + [f"time {t}" for t in times] + ["Total"]
        return Table(
            columns=columns,
            rows=[["All participants"] + cells + [_count_cell(obs)]],
            numeric=[False] + [True] * (len(columns) - 1),
        )
    columns = ["Arm"] + levels.times + ["Total"]
    rows = []
    for arm in levels.arms + [None]:
        sub = obs if arm is None else obs[obs["arm"].astype(str) == arm]
        cells = [_count_cell(sub[sub["time"].astype(str) == t]) for t in levels.times]
        rows.append(["All arms" if arm is None else arm] + cells + [_count_cell(sub)])
    return Table(columns=columns, rows=rows, numeric=[False] + [True] * (len(columns) - 1))


def _predictor_summary(obs: pd.DataFrame, methods: dict) -> Table | None:
    """An association study's predictors over the samples analysed: aggregates only (mean, SD, or the
    samples per level), never a participant's value."""
    predictors = [str(p) for p in methods.get("predictors", []) if p in obs]
    if not predictors:
        return None
    rows = []
    for name in predictors:
        values = obs[name]
        if pd.api.types.is_numeric_dtype(values):
            summary = f"mean {_fmt_num(values.mean())}, SD {_fmt_num(values.std(ddof=1))}"
        else:
            summary = "; ".join(
                f"{level}: {count}" for level, count in values.astype(str).value_counts(sort=False).items()
            )
        rows.append([name, summary, str(int(values.notna().sum()))])
    return Table(columns=["Predictor", "Over the samples analysed", "Samples"], rows=rows, numeric=[False, False, True])


def _count_cell(obs: pd.DataFrame) -> str:
    """'participants / samples' for a subset of samples."""
    return f"{obs['participant'].nunique()} / {len(obs)}"


# ---------------------------------------------------------------- QC


def _qc_figures(adata: anndata.AnnData, levels: Levels, samples: list[str]) -> list[tuple[str, Figure | None, str]]:
    """QC panels as (title, figure or None, note shown when the figure cannot be drawn)."""
    return [
        (
            "Library sizes",
            _library_size_figure(adata.obs, levels, samples),
            "Library sizes are not available (the input was already on the log2 scale).",
        ),
        (
            "Size factors vs library size",
            _size_factor_figure(adata.obs, levels, samples),
            "Size factors are not available (the input was already on the log2 scale).",
        ),
        ("Principal components", _pca_figure(adata, levels, samples), "Too few samples or variable genes for a PCA."),
    ]


def _numeric_obs(obs: pd.DataFrame, column: str) -> np.ndarray:
    """An obs column as floats, all NaN when absent."""
    if column not in obs.columns:
        return np.full(len(obs), np.nan)
    return pd.to_numeric(obs[column], errors="coerce").to_numpy(dtype=float)


def _library_size_figure(obs: pd.DataFrame, levels: Levels, samples: list[str]) -> Figure | None:
    """Per-sample library sizes as box + points per arm at each time (log axis)."""
    sizes = _numeric_obs(obs, "library_size")
    if not np.isfinite(sizes).any():
        return None
    colours, arms = _arm_colours(levels), obs["arm"].astype(str).to_numpy()
    times, labels = np.array(_plot_text(obs["time"].astype(str)), dtype=object), np.array(samples, dtype=object)
    data = []
    for arm in levels.arms:
        mask = arms == arm
        data.append(
            {
                "type": "box",
                "x": times[mask].tolist(),
                "y": _round4(sizes[mask]),
                "text": _plot_text(labels[mask]),
                "name": _plot_text([arm])[0],
                "boxpoints": "all",
                "jitter": 0.4,
                "pointpos": 0,
                "marker": {"color": colours[arm], "size": 4},
                "line": {"width": 1},
                "hovertemplate": "%{text}<br>%{y:,.0f} reads",
            }
        )
    layout = {
        "boxmode": "group",
        "height": 380,
        "yaxis": {"type": "log", "title": _title("Library size (reads)")},
        "xaxis": {
            "type": "category",
            "categoryorder": "array",
            "categoryarray": _plot_text(levels.times),
            "title": _title("Time"),
        },
    }
    return _figure("fig-library-size", data, layout, "Total counts per sample, by arm and time.")


def _size_factor_figure(obs: pd.DataFrame, levels: Levels, samples: list[str]) -> Figure | None:
    """Normalisation size factor against library size; points far off the trend flag odd samples."""
    sizes, factors = _numeric_obs(obs, "library_size"), _numeric_obs(obs, "size_factor")
    if not (np.isfinite(sizes) & np.isfinite(factors)).any():
        return None
    colours, arms = _arm_colours(levels), obs["arm"].astype(str).to_numpy()
    labels = np.array(samples, dtype=object)
    data = []
    for arm in levels.arms:
        mask = arms == arm
        data.append(
            {
                "type": "scatter",
                "x": _round4(sizes[mask]),
                "y": _round4(factors[mask]),
                "mode": "markers",
                "text": _plot_text(labels[mask]),
                "name": _plot_text([arm])[0],
                "marker": {"color": colours[arm], "size": 6, "opacity": 0.8},
                "hovertemplate": "%{text}<br>library %{x:,.0f}<br>size factor %{y:.3f}",
            }
        )
    layout = {
        "height": 380,
        "xaxis": {"type": "log", "title": _title("Library size (reads)")},
        "yaxis": {"type": "log", "title": _title("Size factor")},
    }
    return _figure("fig-size-factors", data, layout, "Size factors should track library size closely.")


def _pca(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """PC1/PC2 scores and % of variance of a samples x genes matrix (centred), largest loading positive.

    The two leading eigenpairs of the genes x genes cross-product give the same components as an SVD of
    the centred matrix at a fraction of the cost with many samples; the total variance is its trace.
    Signs are fixed so that each component's largest loading is positive, for run-to-run stability.
    """
    if matrix.shape[0] < 3 or matrix.shape[1] < 2:
        return None
    centred = matrix - matrix.mean(axis=0)
    cross = centred.T @ centred
    total = float(np.trace(cross))
    if not total > 0:
        return None
    n = cross.shape[0]
    values, vectors = linalg.eigh(cross, subset_by_index=[n - 2, n - 1])
    values, loadings = np.clip(values[::-1], 0, None), vectors[:, ::-1].T  # PC1 first
    signs = np.sign(loadings[np.arange(2), np.abs(loadings).argmax(axis=1)])
    return (centred @ loadings.T) * signs, 100 * values / total


def _pca_matrix(adata: anndata.AnnData, n_genes: int = PCA_GENES) -> np.ndarray:
    """The VST values (samples x genes, float) of the ``n_genes`` most variable genes with no missing value.

    Genes are ranked by VST variance, ties by position; ``var["vst_var"]`` is used when present, so only the
    chosen genes' columns are read. Otherwise the variances are computed from the layer in blocks of genes.
    """
    layer = adata.layers["vst"]
    if "vst_var" in adata.var.columns:
        variance = pd.to_numeric(adata.var["vst_var"], errors="coerce").to_numpy(dtype=float)
    else:
        variance = _gene_variances(layer, adata.n_obs, adata.n_vars)
    candidates = np.flatnonzero(np.isfinite(variance))
    ranked = candidates[np.argsort(-variance[candidates], kind="stable")]
    blocks, found, start = [np.empty((adata.n_obs, 0))], 0, 0
    while found < n_genes and start < ranked.size:  # a gene with a missing value is skipped for the next one
        block = _dense(layer, ranked[start : start + n_genes - found])
        start += block.shape[1]
        block = block[:, np.isfinite(block).all(axis=0)]
        blocks.append(block)
        found += block.shape[1]
    return np.hstack(blocks)


def _gene_variances(layer: Any, n_obs: int, n_vars: int) -> np.ndarray:
    """Per-gene variance (ddof 1) of the layer, NaN for genes with a missing or infinite value."""
    variance = np.full(n_vars, np.nan)
    if n_obs < 2:
        return variance
    with np.errstate(invalid="ignore"):
        for start in range(0, n_vars, VARIANCE_CHUNK):
            block = layer[:, start : start + VARIANCE_CHUNK]
            block = np.asarray(block.toarray() if hasattr(block, "toarray") else block, dtype=float)
            variance[start : start + block.shape[1]] = block.var(axis=0, ddof=1)
    return variance


def _dense(layer: Any, columns: np.ndarray) -> np.ndarray:
    """Columns of a dense, sparse or on-disk matrix as a float array, in the order given."""
    ascending = np.sort(columns)  # on-disk (h5py) matrices only take increasing indices
    block = layer[:, ascending]
    block = np.asarray(block.toarray() if hasattr(block, "toarray") else block, dtype=float)
    return block[:, np.searchsorted(ascending, columns)]


def _pca_figure(adata: anndata.AnnData, levels: Levels, samples: list[str]) -> Figure | None:
    """PC1 vs PC2 of the VST layer, colour = arm, symbol = time."""
    result = _pca(_pca_matrix(adata))
    if result is None:
        return None
    coords, percent = result
    colours, obs = _arm_colours(levels), adata.obs
    arms, times = obs["arm"].astype(str).to_numpy(), obs["time"].astype(str).to_numpy()
    labels = np.array(samples, dtype=object)
    data = []
    for arm in levels.arms:
        for t, time in enumerate(levels.times):
            mask = (arms == arm) & (times == time)
            if not mask.any():
                continue
            data.append(
                {
                    "type": "scatter",
                    "x": _round4(coords[mask, 0]),
                    "y": _round4(coords[mask, 1]),
                    "mode": "markers",
                    "text": _plot_text(labels[mask]),
                    "name": _plot_text([f"{arm} · {time}"])[0],
                    "marker": {
                        "color": colours[arm],
                        "symbol": TIME_SYMBOLS[t % len(TIME_SYMBOLS)],
                        "size": 8,
                        "opacity": 0.85,
                        "line": {"width": 0.5, "color": "white"},
                    },
                    "hovertemplate": "%{text}<br>PC1 %{x:.2f}<br>PC2 %{y:.2f}<extra></extra>",
                }
            )
    layout = {
        "height": 460,
        "xaxis": {"title": _title(f"PC1 ({percent[0]:.1f}% of variance)")},
        "yaxis": {"title": _title(f"PC2 ({percent[1]:.1f}% of variance)")},
    }
    return _figure("fig-pca", data, layout, f"PCA of the {PCA_GENES} most variable genes (VST, centred).")


# ---------------------------------------------------------------- genes used

# how the report names the genes of each score group
GROUP_NOUNS = {"inflammatory": "pro-inflammatory", "antiviral": "type I interferon antiviral", "antibody": "antibody"}


def _set_description(genes_used: pd.DataFrame) -> str:
    """'CTRA = 19 pro-inflammatory genes (up) minus 31 type I interferon antiviral and 3 antibody genes
    (down)': the gene set's genes per group and direction, as listed in genes_used.tsv (every gene of
    the set, used or not; the QC section says how many were used)."""
    genes = genes_used[genes_used["group"] != MARKER_GROUP]
    direction = pd.to_numeric(genes["direction"], errors="coerce")

    def listing(sign: int) -> str:
        parts = [
            f"{int(((genes['group'] == g) & (direction == sign)).sum())} {GROUP_NOUNS.get(g, g)}"
            for g in [*SCORE_GROUPS, *sorted(set(genes["group"]) - set(SCORE_GROUPS))]
            if ((genes["group"] == g) & (direction == sign)).any()
        ]
        if not parts:
            return ""
        return (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]) + " genes"

    up, down = listing(1), listing(-1)
    if up and down:
        return f"CTRA = {up} (up) minus {down} (down)"
    return f"CTRA = the mean of {up} (up)" if up else f"CTRA = minus the mean of {down} (down)"


def _genes_used_summary(genes_used: pd.DataFrame) -> list[str]:
    """Per group: 'inflammatory: 18 of 19 used'."""
    groups = [g for g in GENE_GROUPS if g in set(genes_used["group"])]
    groups += sorted(set(genes_used["group"].astype(str)) - set(groups))
    used = genes_used["used"].astype(bool)
    return [
        f"{g}: {int(used[genes_used['group'] == g].sum())} of {int((genes_used['group'] == g).sum())} used"
        for g in groups
    ]


def _genes_used_table(genes_used: pd.DataFrame) -> Table:
    """Every set gene and marker, dropped ones (with their reason) first, then by group."""
    keys = pd.DataFrame(
        {"used": genes_used["used"].astype(bool).astype(int), "group": _rank(genes_used["group"], GENE_GROUPS)},
        index=genes_used.index,
    )
    ordered = genes_used.loc[keys.sort_values(["used", "group"], kind="stable").index]
    rows = [
        [
            str(r.gene),
            str(r.group),
            _direction(r.direction),
            "yes" if bool(r.used) else "no",
            _fmt_cell("matched_id", r.matched_id, {}),
            _fmt_cell("reason", r.reason, {}),
        ]
        for r in ordered.itertuples(index=False)
    ]
    return Table(columns=["Gene", "Group", "Direction", "Used", "Matched id", "Reason"], rows=rows, numeric=[False] * 6)


def _direction(value: Any) -> str:
    """'up' / 'down' for +1 / -1; anything else as given (markers have no direction)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—" if value in (None, "") else str(value)
    return "—" if not np.isfinite(number) else ("up" if number > 0 else "down")


# ---------------------------------------------------------------- trajectories


def _participant_means(scores: pd.DataFrame, columns: list[str], levels: Levels) -> pd.DataFrame:
    """One row per participant (and period) x arm x time: each score's mean over that unit's samples.

    Rows are sorted by participant and period, then by time level (column ``time_level``, 0 = baseline),
    the order in which the individual lines are drawn, so no per-arm or per-score sort is needed."""
    keys = ["participant", "arm", "time"] + (["period"] if "period" in scores.columns else [])
    frame = scores[keys + columns].copy()
    frame[keys] = frame[keys].astype(str)
    units = frame.groupby(keys, sort=True, observed=True)[columns].mean().reset_index()
    units["time_level"] = units["time"].map({t: i for i, t in enumerate(levels.times)})
    return units.sort_values(
        [k for k in keys if k not in ("arm", "time")] + ["time_level"], kind="stable", ignore_index=True
    )


def _mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and t-based 95% CI; the CI is NaN with fewer than two values."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, np.nan, np.nan
    half = stdtrit(values.size - 1, 0.975) * values.std(ddof=1) / np.sqrt(values.size)
    return mean, mean - half, mean + half


def _trajectory_figure(score: str, units: pd.DataFrame, levels: Levels, participants: dict[str, str]) -> Figure:
    """Per arm: mean with 95% CI at each time over faint individual lines (pseudonymised hover).

    ``units`` is ``_participant_means(scores, ...)``: one row per participant (and period) x arm x time."""
    colours = _arm_colours(levels)
    offsets = np.linspace(-0.12, 0.12, len(levels.arms)) if len(levels.arms) > 1 else [0.0]
    arms = units["arm"].to_numpy()
    data = []
    for arm, offset in zip(levels.arms, offsets):
        sub = units[arms == arm]
        if sub.empty:
            continue
        data.append(_individual_lines(sub, score, len(levels.times), offset, participants, colours[arm], arm))
        data.append(_mean_trace(sub, score, levels, offset, colours[arm], arm))
    layout = {
        "height": 400,
        "hovermode": "closest",
        "yaxis": {"title": _title(f"{SCORE_LABELS[score]} score")},
        "xaxis": {
            "tickvals": list(range(len(levels.times))),
            "ticktext": _plot_text(levels.times),
            "range": [-0.4, len(levels.times) - 0.6],
            "title": _title("Time"),
            "zeroline": False,
        },
    }
    return _figure(
        f"fig-trajectory-{score}",
        data,
        layout,
        f"{SCORE_LABELS[score]}: mean and 95% CI per arm; faint lines are participants.",
    )


def _individual_lines(
    sub: pd.DataFrame, score: str, n_times: int, offset: float, participants: dict[str, str], colour: str, arm: str
) -> dict:
    """All participants of one arm as one trace, lines separated by gaps (compact JSON).

    ``sub`` holds one arm's rows of ``_participant_means``, already in drawing order: units (participant,
    and period when present) in sorted order, each unit's points by time level. Each unit's points are
    followed by a None gap; built with array indexing, no per-participant work."""
    unit_keys = ["participant"] + (["period"] if "period" in sub.columns else [])
    keys = sub[unit_keys].to_numpy(dtype=object)
    starts = np.ones(len(sub), dtype=bool)  # first row of each unit
    starts[1:] = (keys[1:] != keys[:-1]).any(axis=1)
    unit = np.cumsum(starts) - 1
    labels = np.array(
        _plot_text(" · ".join([participants[k[0]], *map(str, k[1:])]) for k in keys[starts]), dtype=object
    )
    positions = np.arange(len(sub)) + unit  # each row moves right by one gap per unit before its own
    x, y, text = (np.full(len(sub) + len(labels), None, dtype=object) for _ in range(3))
    x[positions] = np.array(_round4(np.arange(n_times) + offset), dtype=object)[sub["time_level"].to_numpy(dtype=int)]
    y[positions] = _round4(sub[score])
    text[positions] = labels[unit]
    return {
        "type": "scatter",
        "x": x.tolist(),
        "y": y.tolist(),
        "text": text.tolist(),
        "mode": "lines",
        "connectgaps": False,
        "line": {"color": colour, "width": 1},
        "opacity": 0.25,
        "showlegend": False,
        "legendgroup": _plot_text([arm])[0],
        "name": _plot_text([arm])[0],
        "hovertemplate": "%{text}<br>%{y:.3f}",
    }


def _mean_trace(sub: pd.DataFrame, score: str, levels: Levels, offset: float, colour: str, arm: str) -> dict:
    """Arm mean per time with asymmetric error bars for the t-based 95% CI."""
    rows = []
    times, values_all = sub["time"].to_numpy(), sub[score].to_numpy(dtype=float)
    for i, time in enumerate(levels.times):
        values = values_all[times == time]
        if values.size:
            rows.append((i + offset, *_mean_ci(values), values.size))
    x, mean, low, high, n = (list(column) for column in zip(*rows))
    mean_a, low_a, high_a = np.array(mean), np.array(low), np.array(high)
    return {
        "type": "scatter",
        "x": _round4(x),
        "y": _round4(mean_a),
        "mode": "lines+markers",
        "name": _plot_text([arm])[0],
        "legendgroup": _plot_text([arm])[0],
        "line": {"color": colour, "width": 2.5},
        "marker": {"color": colour, "size": 8},
        "error_y": {
            "type": "data",
            "symmetric": False,
            "array": _round4(high_a - mean_a),
            "arrayminus": _round4(mean_a - low_a),
            "thickness": 1.5,
            "width": 4,
        },
        "customdata": [[lo, hi, k] for lo, hi, k in zip(_round4(low_a), _round4(high_a), n)],
        "hovertemplate": "mean %{y:.3f}<br>95% CI %{customdata[0]:.3f} to %{customdata[1]:.3f}<br>n = %{customdata[2]}",
    }


# ---------------------------------------------------------------- contrasts: forest and heatmap


def _contrast_label(row: pd.Series, levels: Levels) -> str:
    """Row label for the forest plot, e.g. 'CTRA · a − control · post'."""
    if row["contrast"] == "association":
        return f"{SCORE_LABELS.get(row['score'], row['score'])} · {row['term']}"
    what = f"{row['arm']} − {levels.control}" if row["contrast"] == "arm_x_time" else f"{row['arm']} change"
    return f"{SCORE_LABELS.get(row['score'], row['score'])} · {what} · {row['time']}"


def forest_trace(rows: pd.DataFrame, position: np.ndarray, labels, name: str, colour: str) -> dict:
    """One group of a forest plot: estimates at ``position`` (y) with 95% CI whiskers, hover text from
    ``labels`` (rows: estimate, ci_low, ci_high, p_value)."""
    return {
        "type": "scatter",
        "x": _round4(rows["estimate"]),
        "y": _round4(position),
        "mode": "markers",
        "name": _plot_text([name])[0],
        "marker": {"color": colour, "size": 8},
        "error_x": {
            "type": "data",
            "symmetric": False,
            "array": _round4(rows["ci_high"] - rows["estimate"]),
            "arrayminus": _round4(rows["estimate"] - rows["ci_low"]),
            "thickness": 1.5,
        },
        "text": _plot_text(labels),
        "customdata": [
            [_fmt_num(lo), _fmt_num(hi), _fmt_p(p)]
            for lo, hi, p in zip(rows["ci_low"], rows["ci_high"], rows["p_value"])
        ],
        "hovertemplate": "%{text}<br>%{x:.3f} (95% CI %{customdata[0]} to %{customdata[1]})"
        "<br>p = %{customdata[2]}<extra></extra>",
    }


def forest_layout(position: np.ndarray, labels, axis: str) -> dict:
    """A forest plot's layout: one labelled row per estimate, a dashed vertical line at zero."""
    zero_line = {
        "type": "line",
        "x0": 0,
        "x1": 0,
        "xref": "x",
        "y0": 0,
        "y1": 1,
        "yref": "y domain",
        "line": {"color": "#444", "width": 1, "dash": "dash"},
    }
    return {
        "shapes": [zero_line],
        "height": 120 + 24 * len(position),
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom"},
        "xaxis": {"title": _title(axis), "zeroline": False},
        "yaxis": {"tickvals": _round4(position), "showgrid": False, "zeroline": False, "ticktext": _plot_text(labels)},
    }


def _forest_figure(contrasts: pd.DataFrame, levels: Levels) -> Figure | None:
    """Main-model estimates with 95% CI whiskers for all scores, top to bottom, zero line marked."""
    main = contrasts[contrasts["model"] == MAIN_MODEL].reset_index(drop=True)
    if main.empty:
        return None
    block = _rank(main["score"], SCORES).to_numpy()
    position = -(np.arange(len(main)) + 0.8 * (np.concatenate([[0], np.cumsum(np.diff(block) != 0)])))
    data = []
    kinds = (
        ("arm_x_time", f"arm × time (vs {levels.control})"),
        ("change", "change from baseline"),
        ("association", "association (per unit of the predictor, or per SD)"),
    )
    for kind, name in kinds:
        mask = (main["contrast"] == kind).to_numpy()
        if not mask.any():
            continue
        rows = main[mask]
        labels = rows.apply(_contrast_label, axis=1, levels=levels)
        data.append(forest_trace(rows, position[mask], labels, name, CONTRAST_COLOURS[kind]))
    labels = main.apply(_contrast_label, axis=1, levels=levels)
    layout = forest_layout(position, labels, "Estimate (score units) with 95% CI")
    what = (
        "association with each predictor term"
        if (main["contrast"] == "association").any()
        else "arm × time and within-arm change"
    )
    return _figure("fig-forest", data, layout, f"Main model (lmm): {what}, 95% CI.")


def _heatmap_figure(genes: pd.DataFrame, levels: Levels) -> Figure | None:
    """Per-gene estimates (arm × time, or change for single-arm studies), one panel per gene group."""
    kinds = [k for k in ("arm_x_time", "association") if (genes["contrast"] == k).any()]
    kind = kinds[0] if kinds else "change"
    sub = genes[genes["contrast"] == kind].astype({"arm": str, "time": str, "gene": str, "group": str})
    if sub.empty:
        return None
    if kind == "association":  # one column per term: shown in the arm column's place
        sub = sub.assign(arm=sub["term"].astype(str))
        columns = [(a, "") for a in dict.fromkeys(sub["arm"])]
    else:
        columns = [(a, t) for a in levels.arms for t in levels.times if ((sub["arm"] == a) & (sub["time"] == t)).any()]
    groups = [g for g in GENE_GROUPS if (sub["group"] == g).any()]
    groups += sorted(set(sub["group"]) - set(groups))
    counts = [sub.loc[sub["group"] == g, "gene"].nunique() for g in groups]
    magnitude = np.abs(sub["estimate"].to_numpy(dtype=float))
    limit = float(magnitude[np.isfinite(magnitude)].max(initial=0.0)) or 1.0
    # plotly's subplot grid (axis domains, shared x axis, panel titles) without its per-trace validation
    layout = make_subplots(
        rows=len(groups),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[c / sum(counts) for c in counts],
        subplot_titles=_plot_text(groups),
    ).layout.to_plotly_json()
    layout.pop("template", None)
    data = []
    for row, group in enumerate(groups, start=1):
        suffix = "" if row == 1 else str(row)
        data.append(
            {**_heatmap_panel(sub[sub["group"] == group], columns), "xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}
        )
        layout[f"yaxis{suffix}"].update(type="category", autorange="reversed")
        layout[f"xaxis{suffix}"].update(type="category")
    for annotation in layout.get("annotations", []):
        annotation.update(font={**annotation.get("font", {}), "size": 13}, xanchor="left", x=0)
    layout.update(
        height=140 + 16 * sum(counts) + 30 * len(groups),
        coloraxis={
            "colorscale": HEATMAP_COLORSCALE,
            "reversescale": True,
            "cmin": -limit,
            "cmax": limit,
            "colorbar": {"title": _title("estimate")},
        },
    )
    what = {"arm_x_time": "arm × time", "association": "association"}.get(kind, "change from baseline")
    return _figure("fig-heatmap", data, layout, f"Per-gene {what} estimates on the VST scale; * FDR < {FDR_THRESHOLD}.")


def _heatmap_panel(sub: pd.DataFrame, columns: list[tuple[str, str]]) -> dict:
    """One group's genes x (arm:time) estimates, with '*' where FDR < threshold."""
    genes = list(dict.fromkeys(sub["gene"]))
    keyed = sub.set_index(["gene", "arm", "time"])
    keyed = keyed[~keyed.index.duplicated()]
    index = pd.MultiIndex.from_tuples([(g, a, t) for g in genes for a, t in columns])
    estimate = keyed["estimate"].reindex(index).to_numpy(dtype=float).reshape(len(genes), len(columns))
    fdr = keyed["fdr"].reindex(index).to_numpy(dtype=float).reshape(len(genes), len(columns))
    return {
        "type": "heatmap",
        "z": [_round4(r) for r in estimate],
        "x": _plot_text(f"{a}:{t}" if t else a for a, t in columns),
        "y": _plot_text(genes),
        "coloraxis": "coloraxis",
        "text": [["*" if f < FDR_THRESHOLD else "" for f in r] for r in fdr],
        "texttemplate": "%{text}",
        "customdata": [[_fmt_p(f) for f in r] for r in fdr],
        "xgap": 1,
        "ygap": 1,
        "hovertemplate": "%{y} · %{x}<br>estimate %{z:.3f}<br>FDR %{customdata}<extra></extra>",
    }


# ---------------------------------------------------------------- tables


def _extra_columns(contrasts: pd.DataFrame) -> list[str]:
    """Non-standard contrast columns holding at least one value (e.g. perm_p, loo_participant)."""
    return [c for c in contrasts.columns if c not in STANDARD_COLUMNS and contrasts[c].notna().any()]


def _robustness_tables(contrasts: pd.DataFrame, participants: dict[str, str]) -> list[tuple[str, Table]]:
    """Alternative models side by side with the main one, and the main model's extra checks."""
    tables = []
    if (contrasts["model"] != MAIN_MODEL).any():
        tables.append(("Estimates by model", _model_comparison_table(contrasts)))
    extra = _extra_columns(contrasts)
    if extra:
        rows = contrasts[contrasts[extra].notna().any(axis=1)]
        tables.append(
            (
                "Additional checks",
                _frame_table(rows, [*_row_keys(contrasts), "model", "estimate"] + extra, participants),
            )
        )
    return tables


def _robustness_verdicts(contrasts: pd.DataFrame, participants: dict[str, str]) -> list[tuple[str, list[str]]]:
    """For each primary test, one plain sentence per check: does it agree with the main model?"""
    out = []
    for _, row in _primary_rows(contrasts).iterrows():
        score = SCORE_LABELS.get(row["score"], row["score"])
        if row["contrast"] == "association":
            title = f"{score}, association with {row['term']} (primary): estimate {_estimate_cell(row)}"
        else:
            versus = f"{row['arm']} vs control" if row["contrast"] == "arm_x_time" else f"change in {row['arm']}"
            title = f"{score}, {versus} at {row['time']} (primary): estimate {_estimate_cell(row)}"
        out.append((title, [s for s in _verdict_sentences(row, contrasts, participants) if s]))
    return out


def _agreement(check_significant: bool, significant: bool) -> str:
    """How a check's conclusion relates to the main model's, in words that claim no more than that."""
    if significant:
        return (
            "agrees (also significant at 5%)." if check_significant else "does not confirm it (not significant at 5%)."
        )
    return (
        "agrees (not significant either)."
        if not check_significant
        else "disagrees: it is significant at 5% where the main model is not; see Methods for what it tests."
    )


def _verdict_sentences(row: pd.Series, contrasts: pd.DataFrame, participants: dict[str, str]) -> list[str]:
    p_main = row["p_holm"] if pd.notna(row.get("p_holm")) else row["p_value"]
    significant = bool(row["p_value"] < 0.05)  # the checks' p-values are unadjusted: compare like with like
    adjusted = (
        " after Holm adjustment over the primary tests"
        if pd.notna(row.get("p_holm")) and row.get("p_holm") != row["p_value"]
        else ""
    )
    said = [
        f"Main model: {'significant' if p_main < 0.05 else 'not significant'} at the 5% level{adjusted} "
        f"({_p_phrase(p_main)}); the checks below are compared with its unadjusted p ({_p_phrase(row['p_value'])})."
        if adjusted
        else f"Main model: {'significant' if significant else 'not significant'} at the 5% level ({_p_phrase(p_main)})."
    ]
    if pd.notna(row.get("perm_p")):
        exact = "exact" in str(row.get("note", ""))
        what = (
            f"all {_count(row, 'n_permutations')} possible allocations"
            if exact
            else f"{_count(row, 'n_permutations')} random allocations"
        )
        how = (
            "Freedman-Lane: the residuals of the model without the predictor permuted between participants"
            if row["contrast"] == "association"
            else "arm labels re-allocated between participants"
        )
        said.append(
            f"Permutation test ({how}, {what}): "
            f"p = {_fmt_p(row['perm_p'])}; it " + _agreement(row["perm_p"] < 0.05, significant)
        )
    if pd.notna(row.get("geneset_p")):
        specific = row["geneset_p"] < 0.05
        said.append(
            f"Random gene sets ({_count(row, 'n_gene_sets')} sets of the same size, matched on expression "
            f"decile, each with its own model fit; a check of specificity, not of the effect): "
            f"p = {_fmt_p(row['geneset_p'])}; "
            + (
                "the contrast is stronger than in all but a few random sets of genes."
                if specific
                else "the data do not show that the contrast is specific to these genes."
            )
        )
    if pd.notna(row.get("loo_max_change")):
        moved = row["estimate"] + row["loo_max_change"]
        flips = np.sign(moved) != np.sign(row["estimate"])
        who = participants.get(str(row["loo_participant"]), str(row["loo_participant"]))
        said.append(
            f"Leaving one participant out: the largest change is {_fmt_num(row['loo_max_change'])} "
            f"(without {who})"
            + (
                "; this flips the sign of a significant estimate, so the result hinges on one participant."
                if flips and significant
                else "."
            )
        )
    key = np.logical_and.reduce([contrasts[k] == row[k] for k in _row_keys(contrasts)])
    for model, label in ((m.name, m.label) for m in OTHER_MODELS):
        other = contrasts[key & (contrasts["model"] == model)]
        if not len(other):
            continue
        o = other.iloc[0]
        if pd.isna(o["p_value"]):
            said.append(f"{label}: no estimate ({o.get('note') or 'not estimable'}).")
            continue
        if model in AS_PUBLISHED_MODELS:  # built to be invalid: reported, never "agrees" or "confirms"
            said.append(f"{AS_PUBLISHED_SENTENCE} p = {_fmt_p(o['p_value'])}; {AS_PUBLISHED_CAVEAT}")
            continue
        same_sign = np.sign(o["estimate"]) == np.sign(row["estimate"])
        said.append(
            f"{label}: {_estimate_cell(o)}; it "
            + _agreement(o["p_value"] < 0.05, significant)
            + ("" if same_sign else " The estimate has the opposite sign.")
        )
    return said


def _adjustment_sentences(methods: dict) -> list[str]:
    """What the marker and covariate adjustment means, and warnings about it (model.json's record)."""
    markers = [str(m) for m in methods.get("markers_used", [])]
    said = []
    if markers:
        said.append(
            f"The main model adjusts for the VST of {len(markers)} leukocyte marker genes ({', '.join(markers)}). "
            "Its contrast is the change in CTRA at fixed marker expression: a direct effect at fixed cell "
            "composition only as far as the markers measure composition without error (they do not "
            "exactly). The model without markers (lmm_no_markers) estimates the total change, including any "
            "part that runs through a shift in cell composition. The two answer different questions; a "
            "difference between them is not a failure of either."
        )
    else:
        said.append(
            "The main model does not adjust for leukocyte markers: its contrast is the total change, "
            "including any part that runs through a shift in cell composition."
        )
    if methods.get("markers_note"):
        said.append(
            f"Markers left out: {methods['markers_note']} (in simulation, eight marker slopes in a trial of "
            "10-16 participants made the main model reject 8-11 % of null tests at the 5 % level)."
        )
    adjustment = methods.get("adjustment") or {}
    used, residual = adjustment.get("columns", 0), adjustment.get("residual_df_without", 0)
    if used and residual and used > residual / 4:
        said.append(
            f"Warning: covariates and markers use {used} model terms, more than a quarter of the "
            f"{residual} residual degrees of freedom the model has without them "
            f"({adjustment.get('participants', '?')} participants). Estimates become noisy and depend on "
            "the adjustment set; consider fewer markers or covariates, and compare with lmm_unadjusted."
        )
    for warning in methods.get("covariate_warnings", []):
        said.append(f"Warning: {warning}")
    return said


def _count(row: pd.Series, column: str) -> str:
    value = row.get(column)
    return str(int(value)) if value is not None and pd.notna(value) else "the"


def _model_comparison_table(contrasts: pd.DataFrame) -> Table:
    """One row per score/contrast/arm/time, one column per model: 'estimate (CI) p'."""
    keys = _row_keys(contrasts)
    models = list(dict.fromkeys(contrasts["model"].astype(str)))
    cells = {(tuple(r[k] for k in keys), str(r["model"])): _estimate_cell(r) for _, r in contrasts.iterrows()}
    rows = [
        list(map(str, key)) + [cells.get((key, m), "—") for m in models]
        for key in dict.fromkeys(tuple(r) for r in contrasts[keys].itertuples(index=False))
    ]
    return Table(
        columns=[k.capitalize() for k in keys] + models,
        rows=rows,
        numeric=[False] * len(keys) + [True] * len(models),
    )


def _estimate_cell(row: pd.Series) -> str:
    """'-0.31 (-0.52, -0.10); p 0.004'."""
    return (
        f"{_fmt_num(row['estimate'])} ({_fmt_num(row['ci_low'])}, {_fmt_num(row['ci_high'])}); "
        f"p {_fmt_p(row['p_value'])}"
    )


def _frame_table(frame: pd.DataFrame, columns: list[str], participants: dict[str, str]) -> Table:
    """Selected columns of a DataFrame, each cell formatted by its column's meaning."""
    rows = [
        [_fmt_cell(c, v, participants) for c, v in zip(columns, values)]
        for values in frame[columns].itertuples(index=False)
    ]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in columns]
    return Table(columns=columns, rows=rows, numeric=numeric)


def _contrasts_table(contrasts: pd.DataFrame, participants: dict[str, str]) -> Table:
    """Every contrast row and column, so a reviewer can check every number."""
    return _frame_table(contrasts, list(contrasts.columns), participants)


# ---------------------------------------------------------------- methods


def _methods_context(methods: dict) -> dict[str, Any]:
    """Methods fields for the template, with dict-valued entries as sorted key/value tables.

    ``normalization`` may be a paragraph or a dict of settings; the latter is shown as a table.
    """
    normalization = methods.get("normalization", "")
    return {
        "normalization": normalization if isinstance(normalization, str) else "",
        "normalization_settings": _key_value_table(
            normalization if isinstance(normalization, dict) else {}, "Setting", "Value"
        ),
        "formula": str(methods.get("formula", "")),
        "primary": _primary_text(methods.get("primary") or {"score": "ctra", "contrast": "arm_x_time"}),
        "gee_minimum": {"participants": MIN_GEE_PARTICIPANTS, "df": MIN_GEE_DF},
        "coefficients": [str(c) for c in methods.get("coefficients", [])],
        "df_method": str(methods.get("df_method", "")),
        "covariates": [str(c) for c in methods.get("covariates", [])],
        "markers_used": [str(m) for m in methods.get("markers_used", [])],
        "parameters": _key_value_table(methods.get("parameters", {}), "Parameter", "Value"),
        "package_versions": _key_value_table(methods.get("package_versions", {}), "Package", "Version"),
        "input_checksums": _key_value_table(methods.get("input_checksums", {}), "File", "SHA-256"),
        "generated": str(methods.get("generated", "")),
    }


def _primary_text(primary: dict) -> str:
    score = SCORE_LABELS.get(primary.get("score"), str(primary.get("score")))
    if primary.get("contrast") == "association":
        return f"the {score} score's association with {primary.get('term')} (coefficient at fixed covariates)"
    what = (
        "each active arm's change from baseline minus control's (arm × time)"
        if primary.get("contrast") == "arm_x_time"
        else "each arm's own change from baseline"
    )
    return f"the {score} score, {what}"


def _key_value_table(mapping: dict, key_name: str, value_name: str) -> Table:
    """A two-column table sorted by key; nested values shown as compact sorted JSON."""
    rows = [
        [str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)]
        for k, v in sorted(mapping.items(), key=lambda item: str(item[0]))
    ]
    return Table(columns=[key_name, value_name], rows=rows, numeric=[False, False])


# ---------------------------------------------------------------- methods text


def normalization_text(info: dict, settings: ReportSettings) -> str:
    """The normalization and scoring paragraph of the methods, from what was actually run."""
    rule = settings.expression_filter
    scoring = (
        f" A gene of the set was used if its normalized count was at least {rule.min_count:g} in at least "
        f"{rule.min_fraction:.0%} of samples and its VST was not constant. Each used gene's VST was z-scored "
        "over all samples of the study (ddof = 1); the CTRA score is the mean of the direction-signed "
        "z-scores (pro-inflammatory +1, antiviral and antibody -1) and each subscore the unsigned mean z "
        "of its group."
    )
    if settings.input == "log2_expression":
        return "The input was already log2-scale expression and was used as given (no DESeq2 normalization)." + scoring
    trend = (
        f"a parametric dispersion trend (asymptotic dispersion {info['a0_asymptotic_dispersion']:.4g}, "
        f"extra-Poisson {info['a1_extra_poisson']:.4g})"
        if info.get("trend") != "mean"
        else f"a mean-based dispersion trend (constant dispersion {info['a0_asymptotic_dispersion']:.4g})"
    )
    if info.get("method") == "vst_subset":
        how = (
            f"fitted on {info['trend_genes']} genes chosen evenly over the mean ranks of genes with mean "
            "normalized count above 5, as R DESeq2's vst() does, and applied to all genes"
        )
    else:
        engine = (
            "PyDESeq2's own DeseqDataSet"
            if info.get("method") == "pydeseq2"
            else "ctra's vectorized implementation of PyDESeq2's genewise dispersion and trend routines"
        )
        how = (
            f"fitted on all {info['trend_genes']} non-zero genes above the dispersion floor (PyDESeq2's full "
            f"vst, R's varianceStabilizingTransformation) by {engine}"
        )
    from .normalize import methods_notes

    return (
        "Size factors: DESeq2 median of ratios (PyDESeq2). Expression: blind variance-stabilizing "
        f"transformation (log2 scale) with {trend}, {how}." + methods_notes(info) + scoring
    )


def parameter_text(settings: ReportSettings) -> dict[str, str]:
    """The configured settings the methods list, as text."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in settings.parameters.items()}
