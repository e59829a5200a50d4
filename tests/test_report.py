"""Tests for the HTML report: sections, offline, escaping, privacy, determinism, edge inputs, size, figure
contents (trajectory lines, PCA against an SVD, the precomputed gene variances) and speed at 10,000 samples."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import anndata
import numpy as np
import pandas as pd
import plotly.offline

from ctra.report import _to_json, render_report, write_report

SECTIONS = (
    "Study summary",
    "Quality control",
    "Score trajectories",
    "Contrasts (forest plot)",
    "Per-gene effects",
    "Robustness",
    "Methods",
    "All contrasts",
)
CTRA_GENES = {
    "IL1B": ("inflammatory", 1),
    "IL6": ("inflammatory", 1),
    "CXCL8": ("inflammatory", 1),
    "TNF": ("inflammatory", 1),
    "IFI44L": ("antiviral", -1),
    "MX1": ("antiviral", -1),
    "OAS1": ("antiviral", -1),
    "IGJ": ("antibody", -1),
    "IGLL1": ("antibody", -1),
}
HOSTILE_SCRIPT = "</script><script>alert(1)</script>"
HOSTILE_IMG = '"><img src=x onerror=alert(1)>'
AGE_VALUE = 1234.5678


def make_inputs(
    arms=("control", "a", "b"),
    times=("pre", "post"),
    n_participants=12,
    n_genes=40,
    counts=True,
    participant_prefix="subj-",
    study="Demo study",
    seed=0,
) -> dict:
    """Synthetic render_report() arguments: participants split over arms, one sample per time each."""
    rng = np.random.default_rng(seed)
    arms, times = list(arms), list(times)
    participants = [f"{participant_prefix}{i:02d}" for i in range(n_participants)]
    obs = pd.DataFrame(
        [{"participant": p, "arm": arms[i % len(arms)], "time": t} for i, p in enumerate(participants) for t in times]
    )
    obs.index = [f"S{i:03d}" for i in range(len(obs))]
    obs["age"] = AGE_VALUE + np.arange(len(obs)) * 1000
    genes = list(CTRA_GENES) + ["CD3E", "CD19"] + [f"G{i:05d}" for i in range(n_genes - len(CTRA_GENES) - 2)]
    raw = rng.negative_binomial(5, 0.01, size=(len(obs), len(genes))).astype(float)
    if counts:
        obs["library_size"] = raw.sum(axis=1)
        obs["size_factor"] = obs["library_size"] / obs["library_size"].median()
    else:
        obs["library_size"] = np.nan
        obs["size_factor"] = np.nan
    adata = anndata.AnnData(X=np.log2(raw + 1), obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["vst"] = np.log2(raw + 1)
    if counts:
        adata.layers["counts"] = raw
    adata.uns["levels"] = {"arm": arms, "time": times}

    scores = obs[["participant", "arm", "time"]].reset_index(names="sample")
    for score in ("ctra", "inflammatory", "antiviral", "antibody"):
        scores[score] = rng.normal(size=len(scores))
    scores["n_genes"] = len(CTRA_GENES)

    contrasts = _contrasts(arms, times, rng)
    gene_rows = [
        {
            "gene": g,
            "group": grp,
            "direction": d,
            "contrast": kind,
            "arm": a,
            "time": t,
            "estimate": rng.normal(),
            "se": 0.2,
            "ci_low": -0.3,
            "ci_high": 0.3,
            "df": 20.0,
            "p_value": rng.uniform(),
            "fdr": rng.choice([0.01, 0.5]),
            "n_samples": len(obs),
        }
        for g, (grp, d) in CTRA_GENES.items()
        for kind, a, t in _contrast_keys(arms, times)
    ]
    genes_used = pd.DataFrame(
        [
            {
                "gene": g,
                "group": grp,
                "direction": d,
                "used": g != "IGLL1",
                "matched_id": g,
                "reason": "" if g != "IGLL1" else "not expressed",
            }
            for g, (grp, d) in CTRA_GENES.items()
        ]
        + [{"gene": "CD3E", "group": "marker", "direction": "", "used": True, "matched_id": "CD3E", "reason": ""}]
    )
    methods = {
        "formula": "ctra ~ arm * time + age + CD3E + (1 | participant)",
        "coefficients": ["arm[T.a]:time[T.post]"],
        "df_method": "Satterthwaite",
        "normalization": "DESeq2 median-of-ratios size factors and variance-stabilising transform.",
        "parameters": {"min_count": 10, "gene_set": "ctra53"},
        "package_versions": {"numpy": np.__version__, "pandas": pd.__version__},
        "input_checksums": {"counts.tsv": "ab" * 32},
        "covariates": ["age"],
        "markers_used": ["CD3E"],
        "generated": "2024-01-01T00:00:00",
    }
    return {
        "study": study,
        "adata": adata,
        "scores": scores,
        "contrasts": contrasts,
        "genes": pd.DataFrame(gene_rows),
        "genes_used": genes_used,
        "methods": methods,
    }


def _contrast_keys(arms: list[str], times: list[str]) -> list[tuple[str, str, str]]:
    """(contrast, arm, time) for every arm x time contrast and every arm's own change."""
    keys = [("arm_x_time", a, t) for a in arms[1:] for t in times[1:]]
    return keys + [("change", a, t) for a in arms for t in times[1:]]


def _contrasts(arms: list[str], times: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Main-model contrast rows for all four scores."""
    rows = []
    for score in ("ctra", "inflammatory", "antiviral", "antibody"):
        for kind, arm, time in _contrast_keys(arms, times):
            estimate = rng.normal(scale=0.3)
            rows.append(
                {
                    "score": score,
                    "model": "lmm",
                    "contrast": kind,
                    "arm": arm,
                    "time": time,
                    "estimate": estimate,
                    "se": 0.1,
                    "ci_low": estimate - 0.2,
                    "ci_high": estimate + 0.2,
                    "df": 18.3,
                    "p_value": rng.uniform(0, 0.1),
                    "n_participants": 12,
                    "n_samples": 24,
                }
            )
    return pd.DataFrame(rows)


def _without_generated(html: str) -> list[str]:
    return [line for line in html.splitlines() if "Report generated" not in line]


class _LinkCollector(HTMLParser):
    """Collects src/href attribute values of real elements (script bodies are not parsed as tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [value or "" for name, value in attrs if name in ("src", "href")]


def test_writes_file_with_all_sections(tmp_path):
    path = tmp_path / "out" / "report.html"
    write_report(path, **make_inputs())
    text = path.read_text(encoding="utf-8")
    for heading in SECTIONS:
        assert f">{heading}</h2>" in text
    assert text.count(plotly.offline.get_plotlyjs()) == 1
    assert 'Plotly.newPlot("fig-pca"' in text
    assert not list(tmp_path.joinpath("out").glob(".*.tmp"))


def test_offline_no_external_resources():
    text = render_report(**make_inputs())
    parser = _LinkCollector()
    parser.feed(text)
    assert not [link for link in parser.links if re.match(r"\s*(https?:)?//", link)]
    assert not re.search(r"<script[^>]*\ssrc\s*=", text, flags=re.I)
    outside_plotlyjs = text.replace(plotly.offline.get_plotlyjs(), "")
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*https?://", outside_plotlyjs, flags=re.I)
    assert "<link" not in outside_plotlyjs


def test_hostile_names_are_escaped():
    inputs = make_inputs(
        arms=("control", HOSTILE_SCRIPT, HOSTILE_IMG),
        times=(HOSTILE_IMG, HOSTILE_SCRIPT),
        participant_prefix=HOSTILE_SCRIPT,
        study=HOSTILE_SCRIPT + HOSTILE_IMG,
    )
    for show in (False, True):
        text = render_report(**inputs, show_participant_ids=show)
        assert "<script>alert" not in text
        assert "<img src=x" not in text
        assert "&lt;/script&gt;&lt;script&gt;alert(1)" in text
    scripts = re.findall(r"<script>(.*?)</script>", text, flags=re.S)
    assert len(scripts) == 1 + text.count("Plotly.newPlot(")


def test_participant_ids_hidden_by_default_and_shown_on_request():
    inputs = make_inputs(participant_prefix="SECRET-ID-")
    hidden = render_report(**inputs)
    assert "SECRET-ID-" not in hidden
    assert "anon-001" in hidden and "anon-012" in hidden
    shown = render_report(**inputs, show_participant_ids=True)
    assert "SECRET-ID-03" in shown


def test_leave_one_out_participant_is_pseudonymised():
    inputs = make_inputs(participant_prefix="SECRET-ID-")
    inputs["contrasts"]["loo_participant"] = "SECRET-ID-05"
    inputs["contrasts"]["perm_p"] = 0.00001
    text = render_report(**inputs)
    assert "SECRET-ID-" not in text
    assert "Additional checks" in text and "&lt;1e-4" in text


def test_covariate_values_never_shown():
    text = render_report(**make_inputs(), show_participant_ids=True)
    assert "1234.5" not in text and "1234.6" not in text and "2234.5" not in text
    assert "1,235" not in text.replace(plotly.offline.get_plotlyjs(), "")


def test_deterministic_except_generated_line():
    first = render_report(**make_inputs())
    inputs = make_inputs()
    inputs["methods"]["generated"] = "2030-12-31T23:59:59"
    second = render_report(**inputs)
    assert first != second
    assert _without_generated(first) == _without_generated(second)


def test_single_arm_study_renders():
    inputs = make_inputs(arms=("only",), times=("pre", "mid", "post"))
    assert not (inputs["contrasts"]["contrast"] == "arm_x_time").any()
    text = render_report(**inputs)
    assert "CTRA in only" in text
    assert "fig-heatmap" in text and "No robustness checks were run." in text


def test_log2_input_renders():
    text = render_report(**make_inputs(counts=False))
    assert "Library sizes are not available" in text
    assert "Size factors are not available" in text
    assert "fig-pca" in text


def test_robustness_table_when_other_models_present():
    inputs = make_inputs()
    other = inputs["contrasts"].assign(model="gee_genes", estimate=0.123456)
    inputs["contrasts"] = pd.concat([inputs["contrasts"], other], ignore_index=True)
    text = render_report(**inputs)
    assert "Estimates by model" in text and "gee_genes" in text and "0.123" in text
    assert "No robustness checks were run." not in text


def test_levels_order_not_alphabetical():
    text = render_report(**make_inputs(arms=("placebo", "drug"), times=("week0", "week12", "week4")))
    design = text[text.index('id="design"') : text.index('id="qc"')]
    assert design.index("placebo") < design.index("drug")
    assert design.index("week12") < design.index("week4")


def test_methods_with_settings_dict_and_missing_optional_keys():
    inputs = make_inputs()
    inputs["methods"]["normalization"] = {"method": "fast", "trend_genes": 1000}
    for key in ("parameters", "generated"):
        del inputs["methods"][key]
    text = render_report(**inputs)
    assert "Normalization settings" in text and "<td>trend_genes</td><td>1000</td>" in text
    assert "{&#39;" not in text


def test_numeric_looking_levels_read_back_as_numbers():
    inputs = make_inputs(times=("0", "6"))
    for name in ("scores", "contrasts", "genes"):
        inputs[name]["time"] = inputs[name]["time"].astype(int)
    text = render_report(**inputs)
    assert "From 0 to 6, CTRA in a changed by" in text


def test_large_study_under_10_mb(tmp_path):
    inputs = make_inputs(n_participants=182, n_genes=20_000)
    path = tmp_path / "big.html"
    write_report(path, **inputs)
    assert inputs["adata"].n_obs == 364
    assert path.stat().st_size < 10 * 1024 * 1024


# ---------------------------------------------------------------- figure contents


def _figures(text: str) -> dict[str, dict]:
    """Every figure of a rendered report, parsed from its ``var fig = ...;`` script, by div id."""
    return {
        fig_id: json.loads(body) for body, fig_id in re.findall(r'var fig = (.*?); Plotly.newPlot\("([^"]+)"', text)
    }


def _points(fig: dict) -> dict[str, tuple[float, float]]:
    """(x, y) of every marker of a scatter figure, keyed by its hover text."""
    return {label: (x, y) for trace in fig["data"] for label, x, y in zip(trace["text"], trace["x"], trace["y"])}


def _reference_pca(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PC1/PC2 scores and % variance by a full SVD, signs so that each largest loading is positive."""
    centred = matrix - matrix.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[np.arange(2), np.abs(vt[:2]).argmax(axis=1)])
    return u[:, :2] * s[:2] * signs, 100 * s[:2] ** 2 / (s**2).sum()


def _check_pca(text: str, inputs: dict, genes: list[int]) -> None:
    """The PCA figure shows the reference PCA of exactly these gene columns of the VST layer."""
    adata = inputs["adata"]
    coords, percent = _reference_pca(adata.layers["vst"][:, genes])
    fig = _figures(text)["fig-pca"]
    shown = _points(fig)
    assert len(shown) == adata.n_obs
    got = np.array([shown[sample] for sample in adata.obs_names])
    np.testing.assert_allclose(got, coords, rtol=1e-3, atol=1e-6)
    assert fig["layout"]["xaxis"]["title"] == {"text": f"PC1 ({percent[0]:.1f}% of variance)"}
    assert fig["layout"]["yaxis"]["title"] == {"text": f"PC2 ({percent[1]:.1f}% of variance)"}


def test_trajectory_lines_one_per_participant_in_time_order():
    inputs = make_inputs(arms=("control", "a"), times=("pre", "mid", "post"), participant_prefix="p")
    # rows shuffled, a missing time, two draws of one sample (averaged), a crossover participant by period
    inputs["scores"] = pd.DataFrame(
        [
            ("p2", "control", "post", "1", 0.5),
            ("p1", "control", "pre", "1", -1.0),
            ("p2", "control", "pre", "1", 0.25),
            ("p3", "a", "post", "1", 1.0),
            ("p3", "a", "pre", "1", 0.125),
            ("p3", "a", "post", "1", 2.0),
            ("p2", "a", "mid", "2", 3.0),
            ("p2", "a", "pre", "2", -0.5),
            ("p2", "control", "mid", "1", 0.75),
        ],
        columns=["participant", "arm", "time", "period", "ctra"],
    )
    text = render_report(**inputs, show_participant_ids=True)
    figures = _figures(text)
    assert [f for f in figures if f.startswith("fig-trajectory")] == ["fig-trajectory-ctra"]
    control, control_mean, treated, treated_mean = figures["fig-trajectory-ctra"]["data"]
    # arms drawn at offsets -0.12 and +0.12 around the time positions 0, 1, 2; None separates participants
    assert control["x"] == [-0.12, None, -0.12, 0.88, 1.88, None]
    assert control["y"] == [-1.0, None, 0.25, 0.75, 0.5, None]
    assert control["text"] == ["p1 · 1", None, "p2 · 1", "p2 · 1", "p2 · 1", None]
    assert treated["x"] == [0.12, 1.12, None, 0.12, 2.12, None]
    assert treated["y"] == [-0.5, 3.0, None, 0.125, 1.5, None]
    assert treated["text"] == ["p2 · 2", "p2 · 2", None, "p3 · 1", "p3 · 1", None]
    assert control["connectgaps"] is False and control["showlegend"] is False
    # arm means per time over participants (p3's two post draws count once, as their mean 1.5)
    assert control_mean["x"] == [-0.12, 0.88, 1.88] and control_mean["y"] == [-0.375, 0.75, 0.5]
    assert treated_mean["x"] == [0.12, 1.12, 2.12] and treated_mean["y"] == [-0.1875, 3.0, 1.5]
    assert [row[2] for row in treated_mean["customdata"]] == [2, 1, 1]
    assert treated_mean["customdata"][1][:2] == [None, None]  # one value: no CI (null, not NaN)
    layout = figures["fig-trajectory-ctra"]["layout"]
    assert layout["xaxis"]["ticktext"] == ["pre", "mid", "post"] and layout["xaxis"]["title"] == {"text": "Time"}


def test_trajectory_hover_uses_pseudonyms():
    inputs = make_inputs(participant_prefix="SECRET-ID-")
    fig = _figures(render_report(**inputs))["fig-trajectory-ctra"]
    labels = {label for trace in fig["data"] for label in trace.get("text", []) if label is not None}
    assert len(labels) == 12 and all(re.fullmatch(r"anon-0(0[1-9]|1[0-2])", label) for label in labels)


def test_figures_keep_the_shared_look_and_plotly_py_colour_scale():
    figures = _figures(render_report(**make_inputs()))
    assert len(figures) == 9
    for fig in figures.values():
        look = fig["layout"]["template"]["layout"]
        assert look["plot_bgcolor"] == "white" and look["font"]["family"].startswith("system-ui")
        assert look["xaxis"]["gridcolor"] == "#e6e6e6"
    # plotly.py's RdBu (dark red to dark blue, reversed), not plotly.js's differently coloured "RdBu"
    scale = figures["fig-heatmap"]["layout"]["coloraxis"]["colorscale"]
    assert scale[0] == [0.0, "rgb(103,0,31)"] and scale[-1] == [1.0, "rgb(5,48,97)"] and len(scale) == 11
    heatmap = figures["fig-heatmap"]
    assert [t["yaxis"] for t in heatmap["data"]] == ["y", "y2", "y3"]
    assert heatmap["layout"]["xaxis"]["matches"] == "x3" and heatmap["layout"]["yaxis2"]["autorange"] == "reversed"
    assert [a["text"] for a in heatmap["layout"]["annotations"]] == ["inflammatory", "antiviral", "antibody"]
    forest = figures["fig-forest"]["layout"]
    assert forest["shapes"][0]["x0"] == 0 and forest["shapes"][0]["yref"] == "y domain"


def test_pca_matches_svd_and_never_reads_x():
    inputs = make_inputs(n_participants=15, n_genes=60)
    inputs["adata"].X = None
    _check_pca(render_report(**inputs, show_participant_ids=True), inputs, list(range(60)))


def test_pca_uses_the_500_most_variable_genes_skipping_missing_values():
    inputs = make_inputs(n_participants=10, n_genes=700, seed=4)
    vst = inputs["adata"].layers["vst"]
    order = np.argsort(-vst.var(axis=0, ddof=1), kind="stable")
    vst[3, order[7]] = np.nan  # the 8th most variable gene now has a missing value: the 501st comes in
    chosen = [g for g in order if g != order[7]][:500]
    _check_pca(render_report(**inputs, show_participant_ids=True), inputs, chosen)


def test_pca_uses_precomputed_vst_var_when_present():
    inputs = make_inputs(n_participants=10, n_genes=700, seed=5)
    adata = inputs["adata"]
    vst = adata.layers["vst"]
    # a ranking unlike the layer's own: the least variable genes first, so using it changes the figure
    adata.var["vst_var"] = -vst.var(axis=0, ddof=1)
    adata.var.iloc[11, adata.var.columns.get_loc("vst_var")] = np.nan  # no variance: never chosen
    order = [g for g in np.argsort(-adata.var["vst_var"].to_numpy(), kind="stable") if g != 11]
    text = render_report(**inputs, show_participant_ids=True)
    _check_pca(text, inputs, order[:500])
    del adata.var["vst_var"]
    computed = render_report(**inputs, show_participant_ids=True)
    assert _figures(computed)["fig-pca"] != _figures(text)["fig-pca"]
    _check_pca(computed, inputs, list(np.argsort(-vst.var(axis=0, ddof=1), kind="stable")[:500]))


def test_figure_json_writes_numpy_values_and_non_finite_as_null():
    assert (
        _to_json({"a": [np.float64("nan"), np.int64(3), np.float32(1.5), np.inf, None, "x"]})
        == '{"a":[null,3,1.5,null,null,"x"]}'
    )
    assert _to_json({"b": np.array([1, 2])}) == '{"b":[1,2]}'


def test_ten_thousand_samples_render_one_line_per_participant():
    """Biobank scale: every participant's line is drawn (speed is measured in benchmarks/, not here)."""
    inputs = make_inputs(n_participants=5000, n_genes=40)
    assert inputs["adata"].n_obs == 10_000
    text = render_report(**inputs)
    lines = _figures(text)["fig-trajectory-ctra"]["data"][0]
    assert lines["y"].count(None) == 1667  # one line per control participant (5000 over 3 arms)


# ---------------------------------------------------------------- verdicts about the primary endpoint


def _primary_inputs(p_value: float, perm_p: float, loo_change: float, estimate: float = 0.4) -> dict:
    """Two-arm inputs whose primary CTRA row has the given main-model p, permutation p and leave-one-out."""
    inputs = make_inputs(arms=("control", "a"))
    contrasts = inputs["contrasts"]
    contrasts["role"] = np.where(
        (contrasts["score"] == "ctra") & (contrasts["contrast"] == "arm_x_time"), "primary", "exploratory"
    )
    primary = contrasts["role"] == "primary"
    contrasts.loc[primary, ["estimate", "p_value", "perm_p", "loo_max_change", "p_holm"]] = [
        estimate,
        p_value,
        perm_p,
        loo_change,
        p_value,
    ]
    contrasts["loo_participant"] = "subj-01"
    contrasts["note"] = ""
    inputs["contrasts"] = contrasts
    return inputs


def _robustness_text(inputs: dict) -> str:
    text = render_report(**inputs)
    return text[text.index('id="robustness"') : text.index('id="methods"')]


def test_verdicts_never_say_survive_and_describe_agreement():
    not_significant = _robustness_text(_primary_inputs(p_value=0.4, perm_p=0.5, loo_change=-0.6))
    assert "surviv" not in not_significant
    assert "Main model: not significant" in not_significant and "agrees (not significant either)" in not_significant
    assert "hinges" not in not_significant  # a sign flip of a non-significant estimate is not flagged
    significant = _robustness_text(_primary_inputs(p_value=0.01, perm_p=0.2, loo_change=-0.6))
    assert "does not confirm it" in significant and "hinges on one participant" in significant
    assert "(primary)" in significant


def test_per_gene_t_verdict_neither_agrees_nor_confirms():
    """The as-published per-gene t is built to be anti-conservative: reported beside the main model,
    whatever its p, never as agreeing with it or confirming it."""
    for main_p, per_gene_p in ((0.01, 0.001), (0.01, 0.3), (0.4, 0.001), (0.4, 0.6)):
        inputs = _primary_inputs(p_value=main_p, perm_p=np.nan, loo_change=np.nan)
        contrasts = inputs["contrasts"]
        row = (
            contrasts[contrasts["role"] == "primary"]
            .iloc[[0]]
            .assign(model="per_gene_t", role="as_published", p_value=per_gene_p, perm_p=np.nan, loo_max_change=np.nan)
        )
        inputs["contrasts"] = pd.concat([contrasts, row], ignore_index=True)
        text = _robustness_text(inputs)
        start = text.index("As-published per-gene t: p = ")
        sentence = text[start : text.index("<", start)]
        assert "anti-conservative (genes are correlated, participants are the unit): not a check" in sentence
        assert not any(word in sentence for word in ("agree", "confirm", "disagree")), sentence


def test_markers_section_explains_direct_vs_total_and_warns_on_df():
    inputs = make_inputs()
    inputs["methods"]["adjustment"] = {"columns": 9, "residual_df_without": 20, "participants": 12}
    inputs["methods"]["covariate_warnings"] = ["covariate 'site' is numeric with only 3 distinct integer values"]
    text = _robustness_text(inputs)
    assert "direct effect" in text and "total change" in text
    assert "more than a quarter of the 20 residual degrees of freedom" in text
    assert "covariate &#39;site&#39; is numeric" in text
    inputs["methods"]["adjustment"]["columns"] = 4
    assert "more than a quarter" not in _robustness_text(inputs)


def test_headline_is_about_the_primary_family_with_holm():
    inputs = make_inputs()  # three arms: two primary tests
    contrasts = inputs["contrasts"]
    contrasts["role"] = np.where(
        (contrasts["score"] == "ctra") & (contrasts["contrast"] == "arm_x_time"), "primary", "exploratory"
    )
    contrasts["p_holm"] = np.where(contrasts["role"] == "primary", 0.03, np.nan)
    text = render_report(**inputs)
    lead = text[: text.index('id="design"')]
    assert "Holm-adjusted p" in lead and "exploratory" in lead


def test_the_gene_set_description_counts_the_set_genes_by_group_and_direction():
    from ctra.report import _set_description

    def usage(groups: dict[str, tuple[int, int]]) -> pd.DataFrame:
        rows = [
            {"gene": f"{g}{i}", "group": g, "direction": d, "used": i % 2 == 0}
            for g, (n, d) in groups.items()
            for i in range(n)
        ]
        return pd.DataFrame(rows + [{"gene": "CD3E", "group": "marker", "direction": "", "used": True}])

    ctra53 = usage({"inflammatory": (19, 1), "antiviral": (31, -1), "antibody": (3, -1)})
    assert _set_description(ctra53) == (
        "CTRA = 19 pro-inflammatory genes (up) minus 31 type I interferon antiviral and 3 antibody genes (down)"
    )
    custom = usage({"inflammatory": (5, 1), "antiviral": (2, -1)})
    assert (
        _set_description(custom)
        == "CTRA = 5 pro-inflammatory genes (up) minus 2 type I interferon antiviral genes (down)"
    )


def test_every_section_in_the_list_has_a_body_and_nothing_else_does():
    """ctra.report.SECTIONS drives the contents and the body: one body_<id> macro per section."""
    import re

    from ctra.report import SECTIONS, TEMPLATE_DIR

    source = (TEMPLATE_DIR / "report_sections.html.j2").read_text()
    assert re.findall(r"\{% macro body_(\w+)\(\) %\}", source) == [s.id for s in SECTIONS]
    assert len({s.title for s in SECTIONS}) == len(SECTIONS)
