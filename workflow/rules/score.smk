rule score:
    """Per-gene z-scores of the VST, direction-signed and averaged; which genes were used and why."""
    input:
        normalized="results/{study}/normalized.h5ad",
        gene_set=gene_set_file,
        markers=marker_file,
    output:
        scores=report(
            "results/{study}/scores.tsv",
            caption="../report/scores.rst",
            category="{study}",
            subcategory="Tables",
            labels={"study": "{study}", "table": "scores.tsv (per draw)"},
        ),
        genes_used=report(
            "results/{study}/genes_used.tsv",
            caption="../report/genes_used.rst",
            category="{study}",
            subcategory="Tables",
            labels={"study": "{study}", "table": "genes_used.tsv"},
        ),
    log:
        "results/{study}/logs/score.log",
    # seconds, not worth a cluster job; a rule flag, not `localrules:`, so it holds under a module's prefix
    localrule: True
    params:
        settings=stage_json("score"),
    shell:
        '"$CTRA_PYTHON" -m ctra.cli score --study-config {params.settings:q} --input {input.normalized:q}'
        " --gene-set {input.gene_set:q} --markers {input.markers:q}"
        " --scores {output.scores:q} --genes-used {output.genes_used:q} --log {log:q}"
