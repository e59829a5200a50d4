rule model:
    """Every model: mixed model per score and per gene (Satterthwaite df), gene-level GEE, sensitivity refits."""
    input:
        normalized="results/{study}/normalized.h5ad",
        scores="results/{study}/scores.tsv",
        genes_used="results/{study}/genes_used.tsv",
    output:
        model_contrasts="results/{study}/work/model_contrasts.tsv",
        genes=report(
            "results/{study}/genes.tsv",
            caption="../report/genes.rst",
            category="{study}",
            subcategory="Tables",
            labels={"study": "{study}", "table": "genes.tsv (per-gene contrasts)"},
        ),
        model_info="results/{study}/model.json",
    log:
        "results/{study}/logs/model.log",
    threads: 1
    resources:
        # reads only the used genes of normalized.h5ad; measured ~0.3 MB per MB of input
        mem_mb=lambda wildcards, input, attempt: (1000 + int(input.size_mb) // 2) * attempt,
        runtime=lambda wildcards, input, attempt: (30 + int(input.size_mb) // 10) * attempt,
    params:
        settings=stage_json("model"),
    shell:
        '"$CTRA_PYTHON" -m ctra.cli model --study-config {params.settings:q} --input {input.normalized:q}'
        " --scores {input.scores:q} --genes-used {input.genes_used:q} --model-contrasts {output.model_contrasts:q}"
        " --genes {output.genes:q} --model-info {output.model_info:q} --log {log:q}"


rule null_chunk:
    """One seeded share of the permutation and random-gene-set draws (runs beside the model)."""
    input:
        normalized="results/{study}/normalized.h5ad",
        scores="results/{study}/scores.tsv",
        genes_used="results/{study}/genes_used.tsv",
    output:
        "results/{study}/work/null_{chunk}.tsv",
    log:
        "results/{study}/logs/null_{chunk}.log",
    threads: 1
    resources:
        # reads the expressed genes' VST (about half of normalized.h5ad); measured ~0.75 MB per MB
        mem_mb=lambda wildcards, input, attempt: (1000 + int(input.size_mb)) * attempt,
        runtime=lambda wildcards, input, attempt: (30 + int(input.size_mb) // 10) * attempt,
    params:
        settings=stage_json("null"),
    shell:
        '"$CTRA_PYTHON" -m ctra.cli null --study-config {params.settings:q} --input {input.normalized:q}'
        " --scores {input.scores:q} --genes-used {input.genes_used:q} --chunk {wildcards.chunk}"
        " --out {output:q} --log {log:q}"


rule robustness:
    """Gather the draws into permutation and random-gene-set p-values, add leave-one-out: the final contrasts table."""
    input:
        normalized="results/{study}/normalized.h5ad",
        scores="results/{study}/scores.tsv",
        genes_used="results/{study}/genes_used.tsv",
        model_info="results/{study}/model.json",
        model_contrasts="results/{study}/work/model_contrasts.tsv",
        nulls=null_chunk_files,
        extra=outcome_contrast_files,
    output:
        contrasts=report(
            "results/{study}/contrasts.tsv",
            caption="../report/contrasts.rst",
            category="{study}",
            subcategory="Tables",
            labels={"study": "{study}", "table": "contrasts.tsv (arm x time)"},
        ),
    log:
        "results/{study}/logs/robustness.log",
    threads: 1
    resources:
        mem_mb=lambda wildcards, input, attempt: (1000 + int(input.size_mb) // 4) * attempt,
        runtime=lambda wildcards, input, attempt: (30 + int(input.size_mb) // 10) * attempt,
    params:
        settings=stage_json("robustness"),
    shell:
        '"$CTRA_PYTHON" -m ctra.cli robustness --study-config {params.settings:q} --input {input.normalized:q}'
        " --scores {input.scores:q} --genes-used {input.genes_used:q} --model-info {input.model_info:q}"
        " --model-contrasts {input.model_contrasts:q} --nulls {input.nulls:q} --extra {input.extra:q}"
        " --contrasts {output.contrasts:q} --log {log:q}"


rule outcomes:
    """Trials with `outcomes:` / `dose:`: each outcome's arm x time model, within/between associations, dose moderation."""
    input:
        normalized="results/{study}/normalized.h5ad",
        scores="results/{study}/scores.tsv",
        genes_used="results/{study}/genes_used.tsv",
    output:
        "results/{study}/work/outcome_contrasts.tsv",
    log:
        "results/{study}/logs/outcomes.log",
    # a few REML fits on the scores: seconds, not worth a cluster job
    localrule: True
    params:
        settings=stage_json("outcomes"),
    shell:
        '"$CTRA_PYTHON" -m ctra.cli outcomes --study-config {params.settings:q} --input {input.normalized:q}'
        " --scores {input.scores:q} --genes-used {input.genes_used:q} --out {output:q} --log {log:q}"


rule mediation:
    """Trials with `mediation:`: the arm effect on each score's change split by each outcome's change (bootstrap CI)."""
    input:
        normalized="results/{study}/normalized.h5ad",
        scores="results/{study}/scores.tsv",
    output:
        report(
            "results/{study}/mediation.tsv",
            caption="../report/mediation.rst",
            category="{study}",
            subcategory="Tables",
            labels={"study": "{study}", "table": "mediation.tsv (arm -> outcome -> score)"},
        ),
    log:
        "results/{study}/logs/mediation.log",
    # participant-level least squares, the bootstrap vectorized: seconds, not worth a cluster job
    localrule: True
    params:
        settings=stage_json("mediation"),
    shell:
        '"$CTRA_PYTHON" -m ctra.cli mediation --study-config {params.settings:q} --input {input.normalized:q}'
        " --scores {input.scores:q} --out {output:q} --log {log:q}"
