rule normalize:
    """Median-of-ratios size factors and blind VST (PyDESeq2); n_cpus = threads."""
    input:
        "results/{study}/validated.h5ad",
    output:
        "results/{study}/normalized.h5ad",
    log:
        "results/{study}/logs/normalize.log",
    threads: 2
    resources:
        # measured peak: ~2.2 MB per MB of validated.h5ad (the counts and the VST); PyDESeq2's own code
        # (normalization: pydeseq2) holds several float64 copies, ~20 MB per MB. Doubled on a retry.
        mem_mb=lambda wildcards, input, attempt: (1000 + normalize_memory_factor(wildcards) * int(input.size_mb))
        * attempt,
        runtime=lambda wildcards, input, attempt: (30 + int(input.size_mb) // 5) * attempt,
    params:
        settings=stage_json("normalize"),
    shell:
        '"$CTRA_PYTHON" -m ctra.cli normalize --study-config {params.settings:q} --input {input:q} --out {output:q}'
        " --threads {threads} --log {log:q}"
