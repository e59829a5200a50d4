rule model:
    """Linear mixed model per score and per gene: arm x time contrasts with Satterthwaite df."""
    input:
        normalized="results/{study}/normalized.h5ad",
        scores="results/{study}/scores.tsv",
        genes_used="results/{study}/genes_used.tsv",
    output:
        contrasts="results/{study}/contrasts.tsv",
        genes="results/{study}/genes.tsv",
        model="results/{study}/model.json",
    params:
        study=study_json,
    threads: 1
    log:
        "results/{study}/logs/model.log",
    shell:
        "{CTRA} model --study-config {params.study:q} --input {input.normalized:q}"
        " --scores {input.scores:q} --genes-used {input.genes_used:q}"
        " --contrasts {output.contrasts:q} --genes {output.genes:q} --model {output.model:q} --log {log:q}"
