# ctra: CTRA scores and arm x time tests from leukocyte RNA-seq. See README.md.
#
# The workflow is workflow/Snakefile (the layout of the Snakemake Workflow Catalog); this file runs it from a
# clone: `snakemake --cores 2` here, or `snakemake --snakefile /path/to/ctra/Snakefile --directory ...`.
# It is the `include:` directive with one difference: the included file's first rule (`all`) stays the default
# target, as it is when workflow/Snakefile is run or imported as a module itself.
workflow.include("workflow/Snakefile", overwrite_default_target=True)
