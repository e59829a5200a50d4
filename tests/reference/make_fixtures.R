# Step 2 of the R reference fixtures: DESeq2 size factors and VST, lmerTest contrasts, geepack GEE.
#
#   python tests/reference/make_inputs.py && Rscript tests/reference/make_fixtures.R
#
# Reads the count tables from where they live (resources/example/, ../shared/data/real/...; nothing of
# the real cohort is copied except the CTRA + marker genes' VST and the size factors) and the small
# inputs make_inputs.py exported to tests/reference/fixtures/<case>/ (ctra's scores, marker VST,
# design, the long-format z of the used genes). Writes, per case, into the same directory:
#
#   size_factors.tsv       DESeq2::estimateSizeFactors (design ~1), every sample
#   vst_vsT.tsv            varianceStabilizingTransformation(dds, blind = TRUE), CTRA + marker genes x samples
#   vst_vst.tsv            vst(dds, blind = TRUE) (nsub = 1000), same genes (absent if vst() refuses the case)
#   genes.tsv              which input row(s) each CTRA / marker gene was matched to (name, symbol, alias)
#   deseq2_info.tsv        genes, genes with mean normalized count > 5, dispersion-trend coefficients
#   lmm_contrasts.tsv      lmerTest::contest(joint = FALSE) for every lmm row of ctra's contrasts.tsv
#   lmm_fit.tsv            variance components, REML criterion and singularity per score
#   gee_coefficients.tsv   geepack::geeglm exchangeable: time and arm x time coefficients, robust SE
#   gee_info.tsv           estimated exchangeable correlation (alpha), scale, clusters, rows
#
# and tests/reference/fixtures/sessionInfo.txt.

suppressPackageStartupMessages({
  library(DESeq2)
  library(lme4)
  library(lmerTest)
  library(geepack)
  library(jsonlite)
})

script_path <- function() {
  arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(arg) == 0) return(normalizePath("tests/reference/make_fixtures.R"))
  normalizePath(sub("^--file=", "", arg[1]))
}
HERE <- dirname(script_path())
REPO <- normalizePath(file.path(HERE, "..", ".."))
FIXTURES <- file.path(HERE, "fixtures")
REAL_DIR <- file.path(dirname(REPO), "shared", "data", "real", "lemay2019_wholeblood_highfat_meal")
SCORES <- c("ctra", "inflammatory", "antiviral", "antibody")

CASES <- list(
  example = list(counts = file.path(REPO, "resources", "example", "counts.tsv.gz"),
                 samples = file.path(REPO, "resources", "example", "samples.tsv"), sample_column = "sample"),
  real = list(counts = file.path(REAL_DIR, "fixed_combinedCounts.txt.gz"),
              samples = file.path(REAL_DIR, "samples.tsv"), sample_column = "count_column"),
  unbalanced = list(counts = file.path(REPO, "resources", "example", "counts.tsv.gz"),
                    samples = file.path(REPO, "resources", "example", "samples.tsv"), sample_column = "sample")
)

write_tsv <- function(frame, path, digits = 10) {
  numeric <- vapply(frame, is.numeric, logical(1))
  frame[numeric] <- lapply(frame[numeric], function(x) ifelse(is.na(x), NA, formatC(x, digits = digits, format = "g")))
  write.table(frame, path, sep = "\t", quote = FALSE, row.names = FALSE, na = "")
}

# ---------------------------------------------------------------------------------------------
# Counts and gene matching (independent of ctra's Python: a gene takes every row under its name,
# symbol or any alias, case-insensitively; several rows of one gene are summed, as ctra does)
# ---------------------------------------------------------------------------------------------

read_counts <- function(path) {
  con <- gzfile(path)
  head <- readLines(con, n = 2)
  close(con)
  header <- strsplit(head[1], "\t", fixed = TRUE)[[1]]
  n_fields <- length(strsplit(head[2], "\t", fixed = TRUE)[[1]])
  table <- read.delim(gzfile(path), header = FALSE, skip = 1, check.names = FALSE, quote = "",
                      colClasses = c("character", rep("numeric", n_fields - 1)))
  samples <- if (n_fields == length(header) + 1) header else header[-1]  # R write.table: no gene label
  counts <- as.matrix(table[, -1])
  dimnames(counts) <- list(table[[1]], samples)
  counts[!startsWith(rownames(counts), "__"), , drop = FALSE]
}

load_gene_sets <- function() {
  read <- function(name) read.delim(file.path(REPO, "resources", "gene_sets", name), colClasses = "character",
                                    na.strings = character(0), comment.char = "#")
  set <- read("ctra53.tsv")
  markers <- read("leukocyte_markers.tsv")
  rbind(set, markers[!markers$gene %in% set$gene, names(set)])
}

match_genes <- function(ids, genes) {
  upper <- toupper(ids)
  rows <- list()
  for (i in seq_len(nrow(genes))) {
    aliases <- toupper(trimws(strsplit(genes$aliases[i], ";", fixed = TRUE)[[1]]))
    names <- c(toupper(genes$gene[i]), if (nzchar(genes$symbol[i])) toupper(genes$symbol[i]), aliases[nzchar(aliases)])
    hit <- ids[upper %in% names]
    if (length(hit)) rows[[genes$gene[i]]] <- sort(unique(hit))
  }
  claimed <- unlist(rows, use.names = FALSE)
  if (anyDuplicated(claimed)) stop("an input row matches two genes: ", claimed[duplicated(claimed)][1])
  rows
}

rename_and_merge <- function(counts, rows) {
  target <- rownames(counts)
  for (gene in names(rows)) target[rownames(counts) %in% rows[[gene]]] <- gene
  if (anyDuplicated(target)) counts <- rowsum(counts, target, reorder = FALSE) else rownames(counts) <- target
  counts
}

# ---------------------------------------------------------------------------------------------
# DESeq2
# ---------------------------------------------------------------------------------------------

trend_coefficients <- function(dds) {
  dds <- estimateDispersionsGeneEst(dds, quiet = TRUE)
  dds <- estimateDispersionsFit(dds, fitType = "parametric", quiet = TRUE)
  attr(dispersionFunction(dds), "coefficients")
}

deseq2_case <- function(case, spec, samples, genes) {
  out <- file.path(FIXTURES, case)
  counts <- read_counts(spec$counts)
  missing <- setdiff(samples, colnames(counts))
  if (length(missing)) stop(case, ": samples without a count column: ", paste(missing, collapse = ", "))
  counts <- counts[, samples, drop = FALSE]
  rows <- match_genes(rownames(counts), genes)
  counts <- rename_and_merge(counts, rows)
  storage.mode(counts) <- "integer"
  dds <- DESeqDataSetFromMatrix(counts, data.frame(row.names = samples), design = ~1)
  dds <- estimateSizeFactors(dds)
  write_tsv(data.frame(sample = samples, size_factor = unname(sizeFactors(dds))),
            file.path(out, "size_factors.tsv"), digits = 17)

  found <- genes[genes$gene %in% names(rows), ]
  write_tsv(data.frame(gene = found$gene, group = found$group, direction = found$direction,
                       input_ids = vapply(found$gene, function(g) paste(rows[[g]], collapse = ";"), "")),
            file.path(out, "genes.tsv"))
  keep <- found$gene

  vsT <- varianceStabilizingTransformation(dds, blind = TRUE, fitType = "parametric")
  coef_all <- trend_coefficients(dds)
  write_vst <- function(values, name) {
    frame <- data.frame(gene = keep, values[keep, , drop = FALSE], check.names = FALSE)
    write_tsv(frame, file.path(out, name), digits = 10)
  }
  write_vst(assay(vsT), "vst_vsT.tsv")

  base_mean <- rowMeans(counts(dds, normalized = TRUE))
  n_above5 <- sum(base_mean > 5)
  info <- data.frame(key = c("n_genes", "n_genes_basemean_gt5", "nsub", "vsT_trend_genes", "vsT_asymptDisp",
                             "vsT_extraPois"),
                     value = c(nrow(dds), n_above5, 1000, sum(rowSums(counts) > 0),
                               coef_all[["asymptDisp"]], coef_all[["extraPois"]]))
  if (n_above5 >= 1000) {
    vs <- vst(dds, blind = TRUE)  # nsub = 1000 (default)
    write_vst(assay(vs), "vst_vst.tsv")
    # the subset vst() fits its trend on, to record the coefficients
    o <- order(base_mean[base_mean > 5])
    sub <- dds[base_mean > 5, ][o[round(seq(from = 1, to = length(o), length = 1000))], ]
    coef_sub <- trend_coefficients(sub)
    info <- rbind(info, data.frame(key = c("vst_asymptDisp", "vst_extraPois"),
                                   value = c(coef_sub[["asymptDisp"]], coef_sub[["extraPois"]])))
  } else {
    message(case, ": only ", n_above5, " genes have mean normalized count > 5 (< nsub = 1000); vst() refuses, ",
            "no vst_vst.tsv")
    unlink(file.path(out, "vst_vst.tsv"))
  }
  write_tsv(info, file.path(out, "deseq2_info.tsv"), digits = 12)
  message(case, ": ", nrow(dds), " genes, ", ncol(dds), " samples, ", n_above5, " with mean normalized count > 5")
}

# ---------------------------------------------------------------------------------------------
# Design data (ctra's own scores and marker VST), as R factors and centered numerics
# ---------------------------------------------------------------------------------------------

read_design <- function(case) {
  design <- fromJSON(file.path(FIXTURES, case, "design.json"))
  for (key in c("covariates", "categorical_covariates", "markers", "excluded_samples", "arm_levels", "time_levels"))
    design[[key]] <- as.character(unlist(design[[key]]))  # [] comes back as list()
  design
}

design_data <- function(case) {
  dir <- file.path(FIXTURES, case)
  design <- read_design(case)
  text <- c("sample", "participant", "arm", "time", "period", design$categorical_covariates)
  header <- strsplit(readLines(file.path(dir, "lmm_input.tsv"), n = 1), "\t", fixed = TRUE)[[1]]
  classes <- ifelse(header %in% text, "character", "numeric")
  data <- read.delim(file.path(dir, "lmm_input.tsv"), colClasses = classes, check.names = FALSE,
                     na.strings = character(0))
  data$arm <- factor(data$arm, levels = design$arm_levels)
  data$time <- factor(data$time, levels = design$time_levels)
  data$participant <- factor(data$participant)
  if (isTRUE(design$period)) data$period <- factor(data$period)
  for (name in design$covariates) {
    if (name %in% design$categorical_covariates) {
      data[[name]] <- factor(data[[name]], levels = unique(data[[name]]))  # first appearance = reference
    } else {
      data[[name]] <- data[[name]] - mean(data[[name]])
    }
  }
  for (name in design$markers) data[[name]] <- data[[name]] - mean(data[[name]])
  list(design = design, data = data)
}

fixed_terms <- function(design) {
  arm_time <- if (length(design$arm_levels) > 1) "arm * time" else "time"
  paste(c(arm_time, sprintf("`%s`", c(design$covariates, design$markers))), collapse = " + ")
}

# R's coefficient name for ctra's (arm, time) cells, treatment coding
coef_time <- function(time) paste0("time", time)
coef_interaction <- function(arm, time) paste0("arm", arm, ":time", time)
ctra_time <- function(time) sprintf("time[T.%s]", time)
ctra_interaction <- function(arm, time) sprintf("arm[T.%s]:time[T.%s]", arm, time)

# ---------------------------------------------------------------------------------------------
# Linear mixed model: lmerTest, REML, Satterthwaite
# ---------------------------------------------------------------------------------------------

lmm_case <- function(case) {
  dir <- file.path(FIXTURES, case)
  dd <- design_data(case)
  design <- dd$design
  data <- dd$data
  wanted <- read.delim(file.path(dir, "ctra_contrasts.tsv"), colClasses = "character")
  random <- if (isTRUE(design$period)) "(1 | participant) + (1 | participant:period)" else "(1 | participant)"
  control <- design$arm_levels[1]
  results <- list()
  fits <- list()
  for (score in unique(wanted$score)) {
    formula <- as.formula(paste("score ~", fixed_terms(design), "+", random))
    data$score <- data[[score]]
    fit <- lmerTest::lmer(formula, data = data, REML = TRUE)
    beta <- fixef(fit)
    stopifnot(length(beta) == length(design$ctra_coefficients))
    rows <- wanted[wanted$score == score, ]
    for (i in seq_len(nrow(rows))) {
      L <- setNames(numeric(length(beta)), names(beta))
      if (rows$contrast[i] == "arm_x_time") {
        L[coef_interaction(rows$arm[i], rows$time[i])] <- 1
      } else if (rows$contrast[i] == "change") {
        L[coef_time(rows$time[i])] <- 1
        if (rows$arm[i] != control) L[coef_interaction(rows$arm[i], rows$time[i])] <- 1
      } else stop("unknown contrast ", rows$contrast[i])
      stopifnot(length(L) == length(beta), sum(L) == sum(L != 0))
      test <- contest(fit, matrix(L, nrow = 1), joint = FALSE, ddf = "Satterthwaite")
      results[[length(results) + 1]] <- data.frame(
        score = score, contrast = rows$contrast[i], arm = rows$arm[i], time = rows$time[i],
        estimate = test$Estimate, se = test[["Std. Error"]], df = test$df, t = test[["t value"]],
        p_value = test[["Pr(>|t|)"]])
    }
    vc <- as.data.frame(VarCorr(fit))
    fits[[length(fits) + 1]] <- data.frame(
      score = score, formula = paste(deparse(formula, width.cutoff = 500), collapse = ""),
      sigma2 = sigma(fit)^2, var_participant = vc$vcov[vc$grp == "participant"],
      var_participant_period = if (isTRUE(design$period)) vc$vcov[vc$grp == "participant:period"] else NA,
      reml_criterion = unname(REMLcrit(fit)), singular = isSingular(fit), n_obs = nobs(fit))
  }
  write_tsv(do.call(rbind, results), file.path(dir, "lmm_contrasts.tsv"), digits = 12)
  write_tsv(do.call(rbind, fits), file.path(dir, "lmm_fit.tsv"), digits = 12)
  message(case, ": ", length(results), " lmm contrasts")
}

# ---------------------------------------------------------------------------------------------
# Gene-level GEE: geepack, exchangeable within participant, robust (sandwich) SE
# ---------------------------------------------------------------------------------------------

gee_case <- function(case) {
  dir <- file.path(FIXTURES, case)
  dd <- design_data(case)
  design <- dd$design
  long <- read.delim(gzfile(file.path(dir, "gee_input.tsv.gz")), colClasses = c("character", "character",
                     "character", "numeric"))
  # sorted by participant, then sample, then gene (make_inputs.py); keep that order exactly
  stopifnot(!is.unsorted(long$participant), all(rle(long$participant)$lengths > 0),
            !anyDuplicated(rle(long$participant)$values))
  at <- match(long$sample, dd$data$sample)
  stopifnot(!anyNA(at))
  extra <- c("arm", "time", design$covariates, design$markers)
  data <- cbind(long, dd$data[at, extra, drop = FALSE])
  data$gene <- factor(data$gene, levels = sort(unique(data$gene)))
  data$id <- match(data$participant, unique(data$participant))
  formula <- as.formula(paste("z ~ gene +", fixed_terms(design)))
  fit <- geeglm(formula, id = id, data = data, family = gaussian, corstr = "exchangeable")
  table <- summary(fit)$coefficients
  arms <- design$arm_levels
  times <- design$time_levels[-1]
  terms <- c(coef_time(times), if (length(arms) > 1) as.vector(outer(arms[-1], times, coef_interaction)))
  ctra_names <- c(ctra_time(times), if (length(arms) > 1) as.vector(outer(arms[-1], times, ctra_interaction)))
  stopifnot(all(terms %in% rownames(table)))
  write_tsv(data.frame(term = ctra_names, r_term = terms, estimate = table[terms, "Estimate"],
                       robust_se = table[terms, "Std.err"], wald = table[terms, "Wald"],
                       p_value = table[terms, "Pr(>|W|)"]),
            file.path(dir, "gee_coefficients.tsv"), digits = 12)
  corr <- summary(fit)$corr
  scale <- summary(fit)$dispersion
  write_tsv(data.frame(key = c("formula", "alpha", "alpha_se", "scale", "scale_se", "n_clusters", "n_obs",
                               "n_genes", "max_cluster_size"),
                       value = c(paste(deparse(formula, width.cutoff = 500), collapse = ""),
                                 formatC(c(corr[1, "Estimate"], corr[1, "Std.err"], scale[1, "Estimate"],
                                           scale[1, "Std.err"]), digits = 12, format = "g"),
                                 length(unique(data$id)), nrow(data), nlevels(data$gene), max(table(data$id)))),
            file.path(dir, "gee_info.tsv"))
  message(case, ": GEE alpha = ", signif(corr[1, "Estimate"], 4))
}

# ---------------------------------------------------------------------------------------------

genes <- load_gene_sets()
for (case in names(CASES)) {
  spec <- CASES[[case]]
  dir <- file.path(FIXTURES, case)
  if (!file.exists(file.path(dir, "design.json"))) {
    message(case, ": no ", file.path(dir, "design.json"), "; run make_inputs.py first. Skipped.")
    next
  }
  design <- read_design(case)
  if (file.exists(spec$counts)) {
    sheet <- read.delim(spec$samples, colClasses = "character", check.names = FALSE)
    samples <- setdiff(sheet[[spec$sample_column]], design$excluded_samples)
    ctra_samples <- read.delim(file.path(dir, "lmm_input.tsv"), colClasses = "character")$sample
    if (!identical(samples, ctra_samples)) stop(case, ": sample sheet minus exclusions differs from ctra's samples")
    deseq2_case(case, spec, samples, genes)
  } else {
    message(case, ": counts not found at ", spec$counts, "; DESeq2 fixtures not refreshed")
  }
  lmm_case(case)
  gee_case(case)
}
writeLines(capture.output(sessionInfo()), file.path(FIXTURES, "sessionInfo.txt"))
message("wrote ", FIXTURES)
