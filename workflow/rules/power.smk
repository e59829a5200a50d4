# Power and sample size for the next trial, from the study's fitted main model (README "Power and sample size").


rule effect:
    """The primary endpoint's fitted summary: variance components, baseline SD, draw patterns, primary rows."""
    input:
        normalized="results/{study}/normalized.h5ad",
        scores="results/{study}/scores.tsv",
        genes_used="results/{study}/genes_used.tsv",
        # the model stage's contrasts (the same estimates as contrasts.tsv): runs beside the null draws
        model_contrasts="results/{study}/work/model_contrasts.tsv",
        model_info="results/{study}/model.json",
    output:
        "results/{study}/work/primary_effect.json",
    log:
        "results/{study}/logs/effect.log",
    # one REML fit of one score: seconds
    localrule: True
    params:
        settings=stage_json("effect"),
    shell:
        '"$CTRA_PYTHON" -m ctra.cli effect --study-config {params.settings:q} --input {input.normalized:q}'
        " --scores {input.scores:q} --genes-used {input.genes_used:q}"
        " --model-contrasts {input.model_contrasts:q} --model-info {input.model_info:q} --out {output:q} --log {log:q}"


rule power:
    """Power curves and participants per arm for each target (closed form: seconds even at 10,000 per arm)."""
    input:
        effect="results/{study}/work/primary_effect.json",
    output:
        report(
            "results/{study}/power.tsv",
            caption="../report/power.rst",
            category="{study}",
            subcategory="Tables",
            labels={"study": "{study}", "table": "power.tsv (next trial)"},
        ),
    log:
        "results/{study}/logs/power.log",
    localrule: True
    params:
        settings=stage_json("power"),
    shell:
        '"$CTRA_PYTHON" -m ctra.cli power --study-config {params.settings:q} --effect {input.effect:q}'
        " --out {output:q} --log {log:q}"
