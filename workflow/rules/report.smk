rule report:
    """One self-contained HTML report per study (works offline)."""
    input:
        normalized="results/{study}/normalized.h5ad",
        scores="results/{study}/scores.tsv",
        genes_used="results/{study}/genes_used.tsv",
        contrasts="results/{study}/contrasts.tsv",
        genes="results/{study}/genes.tsv",
        model_info="results/{study}/model.json",
        mediation=mediation_files,
        power=power_file,
    output:
        report(
            "results/{study}/report.html",
            caption="../report/report_html.rst",
            category="{study}",
            subcategory="Report",
            labels={"study": "{study}", "file": "report.html"},
        ),
    log:
        "results/{study}/logs/report.log",
    # seconds, not worth a cluster job; a rule flag, not `localrules:`, so it holds under a module's prefix
    localrule: True
    params:
        settings=stage_json("report"),
    shell:
        '"$CTRA_PYTHON" -m ctra.cli report --study {wildcards.study:q} --study-config {params.settings:q}'
        " --input {input.normalized:q} --scores {input.scores:q} --genes-used {input.genes_used:q}"
        " --contrasts {input.contrasts:q} --genes {input.genes:q} --model-info {input.model_info:q}"
        " --mediation {input.mediation:q} --power {input.power:q} --out {output:q} --log {log:q}"
