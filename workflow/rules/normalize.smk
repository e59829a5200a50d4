rule normalize:
    """Median-of-ratios size factors and blind VST (PyDESeq2); n_cpus = threads."""
    input:
        "results/{study}/validated.h5ad",
    output:
        "results/{study}/normalized.h5ad",
    params:
        study=study_json,
    threads: 2
    log:
        "results/{study}/logs/normalize.log",
    shell:
        "{CTRA} normalize --study-config {params.study:q} --input {input:q} --out {output:q}"
        " --threads {threads} --log {log:q}"
