"""The report parts that plan beyond one study: the study report's Power section and the synthesis report.

Both reuse ``ctra.report``'s machinery (script-safe plotly JSON, the shared look and table macros,
autoescaped jinja templates, offline plotly.js), so the same escaping and offline rules hold. Neither
shows a participant: power.tsv and meta.tsv hold study-level numbers only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.offline

from .power import LABELS
from .report import (
    ARM_COLOURS,
    PLOT_CONFIG,
    Figure,
    Table,
    _environment,
    _figure,
    _fmt_num,
    _fmt_p,
    _plot_text,
    _round4,
    _title,
)
from .results import atomic_path
from .synthesis import INPUT_LABELS

WINNERS_CURSE = (
    "Power at the observed effect of a small trial is optimistic: an estimate that was large enough to be noticed "
    "(and to prompt a new trial) overstates the true effect on average (the winner's curse), most in the smallest "
    "trials. Plan on the row at the 95 % CI bound nearer zero, or on an effect the field would care about, "
    "rather than on the observed estimate."
)


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def _effect_text(row: pd.Series) -> str:
    """The effect in score units and in baseline SD (the SD of the primary score over the baseline draws)."""
    return f"{row['effect']:+.2f} (score units; {row['effect_baseline_sd']:+.2f} baseline SD)"


def _who(row: pd.Series) -> str:
    return f"{row['arm']} vs control at {row['time']}" if row["arm"] else f"any arm vs control at {row['time']}"


def power_section(power: pd.DataFrame | None) -> dict:
    """Template variables of the Power section from power.tsv (None: not computed)."""
    if power is None:
        return {"power": None}
    if power.empty:
        return {
            "power": {
                "sentences": [],
                "caveat": "",
                "table": None,
                "figure": None,
                "note": "Power was not computed: it is planned for parallel designs only (this study is a crossover).",
            }
        }
    power = power.fillna({"arm": "", "note": ""})
    sizes = power[power["kind"] == "sample_size"]
    curves = power[power["kind"] == "curve"]
    return {
        "power": {
            "sentences": _power_sentences(sizes),
            "caveat": WINNERS_CURSE,
            "table": _sample_size_table(sizes),
            "figure": _power_figure(curves, sizes),
            "note": _power_note(power),
        }
    }


def _power_sentences(sizes: pd.DataFrame) -> list[str]:
    """One plain sentence per primary row's observed effect, at the highest target."""
    if sizes.empty:
        return []
    target = sizes["target"].max()
    out = []
    for _, row in sizes[(sizes["effect_label"] == "observed") & (sizes["target"] == target)].iterrows():
        attrition = row.get("attrition", math.nan)
        level = f"a two-sided {_pct(row['alpha'])} level"
        if pd.isna(row["per_arm"]):
            out.append(
                f"To detect the observed {_effect_text(row)} ({_who(row)}) with {_pct(target)} power at {level}, "
                f"a trial would need more than {row['note'].rsplit(' ', 1)[-1] if row['note'] else 'the maximum'} "
                "participants per arm."
            )
            continue
        extra = (
            f"; with {_pct(attrition)} of participants lost before any draw, {int(row['enrolled_per_arm'])} per arm "
            "to enrol"
            if np.isfinite(attrition) and attrition > 0
            else ""
        )
        covers = sizes[
            (sizes["effect_label"] == "ci_bound") & (sizes["arm"] == row["arm"]) & (sizes["time"] == row["time"])
        ]
        caution = (
            " Its 95 % CI covers zero, so this estimate is no evidence of an effect: plan on an effect that matters."
            if len(covers) and (covers["effect"] == 0).all()
            else ""
        )
        out.append(
            f"To detect the observed {_effect_text(row)} ({_who(row)}) with {_pct(target)} power at {level}, "
            f"a {_n_arms(row)} trial needs {int(row['per_arm'])} participants per arm{extra}.{caution}"
        )
    return out


def _n_arms(row: pd.Series) -> str:
    words = {2: "two-arm", 3: "three-arm", 4: "four-arm", 5: "five-arm"}
    arms = int(row["planned_arms"]) if "planned_arms" in row and pd.notna(row["planned_arms"]) else 2
    return words.get(arms, f"{arms}-arm")


def _sample_size_table(sizes: pd.DataFrame) -> Table:
    columns = [
        "effect",
        "contrast",
        "effect (score units; baseline SD)",
        "power target",
        "participants per arm",
        "to enrol per arm",
        "note",
    ]
    rows = [
        [
            LABELS[row["effect_label"]],
            _who(row),
            _effect_text(row),
            _pct(row["target"]),
            "—" if pd.isna(row["per_arm"]) else f"{int(row['per_arm']):,}",
            "—" if pd.isna(row["enrolled_per_arm"]) else f"{int(row['enrolled_per_arm']):,}",
            str(row["note"]),
        ]
        for _, row in sizes.iterrows()
    ]
    return Table(columns=columns, rows=rows, numeric=[False, False, True, True, True, True, False])


def _power_figure(curves: pd.DataFrame, sizes: pd.DataFrame) -> Figure | None:
    if curves.empty:
        return None
    data = []
    keys = list(dict.fromkeys(zip(curves["effect_label"], curves["arm"], curves["time"], curves["effect"])))
    for i, (label, arm, time, effect) in enumerate(keys):
        if effect == 0:  # a CI bound at zero: power = alpha at every n (the table says so)
            continue
        sub = curves[
            (curves["effect_label"] == label)
            & (curves["arm"] == arm)
            & (curves["time"] == time)
            & (curves["effect"] == effect)
        ]
        name = f"{LABELS[label]}: {effect:+.2f} score units" + (f" ({arm}, {time})" if arm else "")
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": sub["per_arm"].astype(int).tolist(),
                "y": _round4(sub["power"]),
                "name": _plot_text([name])[0],
                "line": {
                    "color": ARM_COLOURS[(i + 1) % len(ARM_COLOURS)],
                    "dash": "dot" if label == "user" else "solid",
                },
                "hovertemplate": "%{x} per arm: power %{y:.2f}<extra></extra>",
            }
        )
    shapes = [
        {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": t, "y1": t, "line": {"color": "#999", "dash": "dash"}}
        for t in sorted(set(sizes["target"].dropna()))
    ]
    layout = {
        "xaxis": {"title": _title("participants per arm (analysed)"), "type": "log"},
        "yaxis": {"title": _title("power"), "range": [0, 1.02]},
        "shapes": shapes,
        "height": 420,
        "legend": {"orientation": "h", "y": -0.25},
    }
    return _figure(
        "fig-power-curves", data, layout, "Power of the primary contrast by participants per arm (dashed: targets)."
    )


def _power_note(power: pd.DataFrame) -> str:
    row = power.iloc[0]
    curve = power[power["kind"] == "curve"].drop_duplicates("per_arm").sort_values("per_arm")
    drops = curve["per_arm"].to_numpy()[1:][np.diff(curve["df"].to_numpy()) < 0]
    markers = (
        f" From {int(drops[0])} per arm the planned model would add the leukocyte markers "
        "(adjust_for_cell_markers: auto keeps them from 20 residual df), which costs their df and switches from the "
        "variance components of the fit without markers (used below that n) to those of the fit with them: hence "
        "the step in the curves there."
        if len(drops)
        else ""
    )
    return (
        f"Analytic power (method '{row['method']}'): the variance of the GLS arm x time contrast for the planned design "
        "with this study's fitted variance components and share of missed draws, a non-central t with the design's "
        "within-participant df. Effects in score units (mean per-gene z, as every estimate in this report) and in "
        "baseline SD (divided by the SD of the primary score over the participants' baseline draws); the configured "
        "planning effects are given in baseline SD. Participants per arm are those "
        "analysed; 'to enrol' adds the attrition (participants lost before any draw; those with only a baseline draw "
        "are already in the missed-draw share). Exact for complete balanced designs; otherwise the df and non-central "
        "t approximation was checked against Monte-Carlo fits of cohorts simulated from the fitted random-intercept "
        "model (README, Calibration), which does not check that the next trial will resemble this one." + markers
    )


# ----------------------------------------------------------------------------------------------
# The synthesis report
# ----------------------------------------------------------------------------------------------


def render_synthesis(table: pd.DataFrame, versions: dict, generated: str) -> str:
    """The synthesis report as one HTML string (offline, escaped; study names are user strings)."""
    studies = table[table["analysis"] == "study"].fillna(
        {"arm": "", "time": "", "input": "", "markers": "", "covariates": ""}
    )
    main = table[table["analysis"] == "random_effects_reml_hk"].iloc[0]
    dl = table[table["analysis"] == "random_effects_dl"].iloc[0]
    loo = table[table["analysis"] == "leave_one_out"]
    sensitivity = table[table["analysis"] == "random_effects_reml_hk_baseline_sd"]
    scaled = sensitivity.iloc[0] if len(sensitivity) else None
    score = str(main["score"])
    context = {
        "title": f"Synthesis of {len(studies)} studies: {score}",
        "summary": _synthesis_sentences(main, dl, studies, scaled),
        "studies": _studies_table(studies),
        "forest": _synthesis_forest(studies, main),
        "heterogeneity": _heterogeneity_lines(main, dl),
        "loo": _loo_table(loo) if len(loo) else None,
        "methods": _synthesis_methods(),
        "versions": sorted(versions.items()),
        "generated": generated,
        "plotly_js": plotly.offline.get_plotlyjs(),
        "plot_config": json.dumps(PLOT_CONFIG, sort_keys=True),
    }
    return _environment().get_template("synthesis.html.j2").render(**context)


def write_synthesis_report(path: str | Path, **kwargs: Any) -> None:
    text = render_synthesis(**kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _ci(row: pd.Series) -> str:
    return f"{row['estimate']:+.2f} score units (95 % CI {row['ci_low']:+.2f} to {row['ci_high']:+.2f})"


def _synthesis_sentences(
    main: pd.Series, dl: pd.Series, studies: pd.DataFrame, scaled: pd.Series | None = None
) -> list[str]:
    inputs = sorted(set(studies["input"]))
    platform = " and ".join(INPUT_LABELS.get(i, i) for i in inputs)
    return [
        f"Pooled over {int(main['k'])} studies ({int(main['n_participants'])} participants; {platform}), the primary "
        f"arm x time contrast is {_ci(main)}, p = {_fmt_p(main['p_value'])} (random effects, REML tau^2, "
        "Hartung-Knapp CI).",
        f"Between-study heterogeneity: tau^2 = {main['tau2']:.3g}, I^2 = {main['i2']:.0f} %, Q = {main['q']:.2f} on "
        f"{int(main['q_df'])} df (p = {_fmt_p(main['q_p'])}); "
        + (
            f"a new study's true effect would lie between {main['pi_low']:+.2f} and {main['pi_high']:+.2f} score "
            "units (95 % prediction interval, t with k - 2 df)."
            if np.isfinite(main["pi_low"])
            else "no prediction interval (it needs 3 or more studies)."
        ),
        f"DerSimonian-Laird (sensitivity): {_ci(dl)}.",
        *(
            [
                f"Each effect divided by its study's baseline SD of the score (sensitivity): {_ci(scaled)}".replace(
                    "score units", "baseline SD"
                )
                + "."
            ]
            if scaled is not None
            else []
        ),
        *([f"Note: {main['note']}."] if main["note"] else []),
    ]


def _studies_table(studies: pd.DataFrame) -> Table:
    columns = [
        "study",
        "input",
        "arm",
        "time",
        "markers",
        "covariates",
        "participants",
        "estimate (score units)",
        "95 % CI",
        "weight",
    ]
    rows = [
        [
            str(r["study"]),
            INPUT_LABELS.get(str(r["input"]), str(r["input"])),
            str(r["arm"]),
            str(r["time"]),
            "adjusted" if str(r.get("markers", "")) not in ("", "none") else "not adjusted",
            str(r.get("covariates", "")).replace(",", ", "),
            f"{int(r['n_participants'])}",
            f"{r['estimate']:+.3f}",
            f"{r['ci_low']:+.3f} to {r['ci_high']:+.3f}",
            f"{r['weight']:.1f} %",
        ]
        for _, r in studies.iterrows()
    ]
    return Table(columns=columns, rows=rows, numeric=[False] * 6 + [True] * 4)


def _synthesis_forest(studies: pd.DataFrame, main: pd.Series) -> Figure:
    names = _plot_text(studies["study"])
    y = list(range(len(studies), 0, -1))
    size = 6 + 14 * np.sqrt(studies["weight"].to_numpy(float) / 100)
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "x": _round4(studies["estimate"]),
            "y": y,
            "marker": {"symbol": "square", "size": _round4(size), "color": ARM_COLOURS[1]},
            "error_x": {
                "type": "data",
                "symmetric": False,
                "array": _round4(studies["ci_high"] - studies["estimate"]),
                "arrayminus": _round4(studies["estimate"] - studies["ci_low"]),
                "color": ARM_COLOURS[1],
            },
            "text": names,
            "name": "studies",
            "hovertemplate": "%{text}: %{x:.2f} score units<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "x": _round4([main["ci_low"], main["estimate"], main["ci_high"], main["estimate"], main["ci_low"]]),
            "y": [0, 0.3, 0, -0.3, 0],
            "fill": "toself",
            "fillcolor": ARM_COLOURS[2],
            "line": {"color": ARM_COLOURS[2]},
            "name": "pooled (REML, Hartung-Knapp)",
            "hoverinfo": "skip",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "x": _round4([main["pi_low"], main["pi_high"]]) if np.isfinite(main["pi_low"]) else [],
            "y": [-0.6, -0.6],
            "line": {"color": "#555", "width": 2},
            "name": "95 % prediction interval",
            "hoverinfo": "skip",
        },
    ]
    layout = {
        "xaxis": {"title": _title("arm x time contrast (score units: mean per-gene z)"), "zeroline": True},
        "yaxis": {
            "tickvals": [*y, 0, -0.6],
            "ticktext": [*names, "pooled", "prediction"],
            "range": [-1.1, len(studies) + 0.7],
        },
        "shapes": [{"type": "line", "x0": 0, "x1": 0, "yref": "paper", "y0": 0, "y1": 1, "line": {"color": "#999"}}],
        "height": 160 + 38 * len(studies),
        "showlegend": False,
    }
    return _figure(
        "fig-synthesis-forest",
        data,
        layout,
        "Each study's primary contrast with its 95 % CI (square size: REML weight), the pooled estimate (diamond: "
        "Hartung-Knapp 95 % CI) and the 95 % prediction interval.",
    )


def _heterogeneity_lines(main: pd.Series, dl: pd.Series) -> list[str]:
    return [
        f"REML tau^2 = {_fmt_num(main['tau2'])} (tau = {math.sqrt(max(main['tau2'], 0)):.3g} score units); "
        f"DerSimonian-Laird tau^2 = {_fmt_num(dl['tau2'])}.",
        f"I^2 = {main['i2']:.1f} %, H^2 = {main['h2']:.2f} (REML).",
        f"Cochran's Q = {main['q']:.3f} on {int(main['q_df'])} df, p = {_fmt_p(main['q_p'])}; with few studies Q has "
        "little power, so a large p does not show the studies agree.",
    ]


def _loo_table(loo: pd.DataFrame) -> Table:
    columns = ["left out", "studies", "estimate (score units)", "95 % CI (Hartung-Knapp)", "tau^2", "I^2"]
    rows = [
        [
            str(r["study"]),
            f"{int(r['k'])}",
            f"{r['estimate']:+.3f}",
            f"{r['ci_low']:+.3f} to {r['ci_high']:+.3f}",
            _fmt_num(r["tau2"]),
            f"{r['i2']:.1f} %",
        ]
        for _, r in loo.iterrows()
    ]
    return Table(columns=columns, rows=rows, numeric=[False, True, True, True, True, True])


def _synthesis_methods() -> list[str]:
    return [
        "Each study's primary arm x time contrast and standard error from its main mixed model, in score units (mean "
        "per-gene z within each study): every gene is z-scored within its own study before the score averages them. "
        "That is not a validated common metric across platforms (RNA-seq counts, microarray log2) or populations; "
        "the pooling of each effect divided by its study's baseline SD of the score is shown as a sensitivity.",
        "Each study's estimand is its own main model: the studies table lists its leukocyte-marker adjustment and "
        "covariates, and a note says when the pooled studies differ in them (they are pooled anyway, with that note).",
        "Random effects: tau^2 by REML (Fisher scoring, truncated at 0), inverse-variance weights 1/(v_i + tau^2), "
        "Hartung-Knapp variance sum w_i (y_i - mu)^2 / ((k - 1) sum w_i) on a t reference with k - 1 df (metafor's "
        "rma(method = 'REML', test = 'knha'); checked against it in tests/reference).",
        "Prediction interval: mu +/- t(k - 2) sqrt(se^2 + tau^2) (Higgins, Thompson & Spiegelhalter 2009; metafor's "
        "predict(pi.type = 'riley')), none with fewer than 3 studies; metafor's default after test = 'knha' uses "
        "t(k - 1), which ignores that tau^2 is estimated. I^2 = tau^2 / (tau^2 + s^2) with s^2 the typical "
        "within-study variance (metafor's definition). Sensitivity: DerSimonian-Laird tau^2 with a Wald (z) CI.",
        "The pooled p-value's size and the CI's coverage with 2-10 studies were checked in a seeded simulation "
        "(README, Calibration).",
    ]
