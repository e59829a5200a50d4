# ctra: CTRA scores and arm x time tests from leukocyte RNA-seq. See README.md.
from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# common.smk checks the config against workflow/schemas/config.schema.yaml (one message per problem)
# and fills in the schema's defaults with snakemake.utils.validate.
include: "workflow/rules/common.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/normalize.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        expand("results/{study}/report.html", study=STUDIES),
