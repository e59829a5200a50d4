rule normalize:
    """Median-of-ratios size factors and blind VST (PyDESeq2); n_cpus = threads."""
    input:
        "results/{study}/validated.h5ad",
    output:
        "results/{study}/normalized.h5ad",
    params:
        study=study_json,
    threads: 2
    resources:
        # PyDESeq2 holds several float64 copies of the matrix: ~20 MB per MB of .h5ad; doubled on a retry.
        mem_mb=lambda wildcards, input, attempt: (1000 + 20 * int(input.size_mb)) * attempt,
        runtime=lambda wildcards, input, attempt: (30 + int(input.size_mb) // 5) * attempt,
    log:
        "results/{study}/logs/normalize.log",
    shell:
        "{CTRA} normalize --study-config {params.study:q} --input {input:q} --out {output:q}"
        " --threads {threads} --log {log:q}"
