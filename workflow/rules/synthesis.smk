# Synthesis across studies: random-effects meta-analysis of the primary contrasts (README "Synthesis across
# studies"). The studies to pool are checked when the workflow is parsed (ctra.config.synthesis_studies:
# unknown, not a trial, another primary score, fewer than two), so a bad `synthesis:` block stops the run with
# one message per study before any job starts (common.smk: SYNTHESIS).
if SYNTHESIS:

    rule synthesis:
        """Pool the studies' standardized primary contrasts: REML + Hartung-Knapp, DL, leave-one-out, forest plot."""
        input:
            effects=[f"results/{s['study']}/work/primary_effect.json" for s in SYNTHESIS],
        output:
            meta=report(
                "results/synthesis/meta.tsv",
                caption="../report/meta.rst",
                category="synthesis",
                subcategory="Tables",
                labels={"study": "synthesis", "table": "meta.tsv"},
            ),
            report=report(
                "results/synthesis/report.html",
                caption="../report/synthesis_html.rst",
                category="synthesis",
                subcategory="Report",
                labels={"study": "synthesis", "file": "report.html"},
            ),
        log:
            "results/synthesis/logs/synthesis.log",
        localrule: True
        params:
            settings=json.dumps({"studies": SYNTHESIS}, sort_keys=True),
        shell:
            '"$CTRA_PYTHON" -m ctra.cli synthesis --study-config {params.settings:q} --effects {input.effects:q}'
            " --meta {output.meta:q} --out {output.report:q} --log {log:q}"
