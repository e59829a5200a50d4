rule validate:
    """Check counts, sample sheet and config together; list every problem at once."""
    input:
        counts=lambda w: study_config(w)["counts"],
        samples=lambda w: study_config(w)["samples"],
        gene_set=gene_set_file,
        markers=marker_file,
        samples_schema=SAMPLES_SCHEMA,
    output:
        "results/{study}/validated.h5ad",
    log:
        "results/{study}/logs/validate.log",
    # seconds, not worth a cluster job; a rule flag, not `localrules:`, so it holds under a module's prefix
    localrule: True
    params:
        settings=stage_json("validate"),
    shell:
        '"$CTRA_PYTHON" -m ctra.cli validate --study {wildcards.study:q} --study-config {params.settings:q}'
        " --gene-set {input.gene_set:q} --markers {input.markers:q}"
        " --samples-schema {input.samples_schema:q} --out {output:q} --log {log:q}"
