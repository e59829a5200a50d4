# ctra: CTRA scores and arm x time tests from leukocyte RNA-seq. See README.md.
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/normalize.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        expand("results/{study}/report.html", study=STUDIES),
