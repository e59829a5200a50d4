# Step 2 of the R reference fixtures: DESeq2 size factors and VST, lmerTest contrasts, geepack GEE,
# and the Mancl-DeRouen bias-reduced sandwich of the GEE (clubSandwich CR3 on nlme::gls).
#
#   python tests/reference/make_inputs.py && Rscript tests/reference/make_fixtures.R [case ...]
#
# With case names, only those cases are refreshed (default: every case with a design.json).
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
#   gee_bias_reduced.tsv   Mancl-DeRouen (CR3) SE of the same coefficients at geepack's alpha (>= 10 clusters)
#   gee_bias_reduced_contrasts.tsv  ctra's gee_genes contrasts of the ctra score with that covariance, t on
#                          clusters - participant-level columns df
#
# The simulated `crossover` case has no counts (make_inputs.py writes its log2-scale inputs directly):
# only the model fixtures are made for it.
#
# and tests/reference/fixtures/sessionInfo.txt.

suppressPackageStartupMessages({
  library(DESeq2)
  library(lme4)
  library(lmerTest)
  library(geepack)
  library(jsonlite)
  library(nlme)
  library(clubSandwich)
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
                    samples = file.path(REPO, "resources", "example", "samples.tsv"), sample_column = "sample"),
  crossover = list(counts = NULL)  # simulated on the log2 scale: no counts, no DESeq2 fixtures
)
MIN_BIAS_REDUCED_CLUSTERS <- 10  # as ctra (robustness.MIN_GEE_PARTICIPANTS); the real cohort has 5

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

# Period levels in natural order: numerically when every label is a number ("10" after "9"), else
# in C-locale (code point) order; the first is the reference. Written from the rule in ctra's docs
# (stats.build_design), not from its code.
natural_levels <- function(values) {
  labels <- sort(unique(as.character(values)), method = "radix")
  numbers <- suppressWarnings(as.numeric(labels))
  if (!anyNA(numbers)) labels <- labels[order(numbers, method = "radix")]
  labels
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
  if (isTRUE(design$period)) data$period <- factor(data$period, levels = natural_levels(data$period))
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

# Crossover (a period column): period and period x time are fixed effects, the standard crossover
# analysis (score ~ arm * time + period + period:time + covariates + markers).
fixed_terms <- function(design) {
  arm_time <- if (length(design$arm_levels) > 1) "arm * time" else "time"
  period <- if (isTRUE(design$period)) "period + period:time"
  paste(c(arm_time, period, sprintf("`%s`", c(design$covariates, design$markers))), collapse = " + ")
}

# R's coefficient name for ctra's (arm, time) cells, treatment coding
coef_time <- function(time) paste0("time", time)
coef_interaction <- function(arm, time) paste0("arm", arm, ":time", time)

# L for an arm's own change from baseline to `time`: the time coefficient, the arm's interaction, and in a
# crossover the period x time coefficients averaged over all periods (reference period weight 0 + ...),
# i.e. the change averaged over periods with equal weight, as ctra's contrast_specs
change_vector <- function(beta_names, arm, time, control) {
  L <- setNames(numeric(length(beta_names)), beta_names)
  L[coef_time(time)] <- 1
  if (arm != control) L[coef_interaction(arm, time)] <- 1
  # R names the term time:period or period:time, whichever variable came first in the formula
  period_time <- grep(paste0("^(period[^:]*:time", time, "|time", time, ":period[^:]*)$"), beta_names, value = TRUE)
  if (length(period_time)) L[period_time] <- 1 / (length(period_time) + 1)
  L
}
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
        L <- change_vector(names(beta), rows$arm[i], rows$time[i], control)
      } else stop("unknown contrast ", rows$contrast[i])
      stopifnot(length(L) == length(beta))
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
  extra <- c("arm", "time", if (isTRUE(design$period)) "period", design$covariates, design$markers)
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
  n_clusters <- length(unique(data$id))
  if (n_clusters >= MIN_BIAS_REDUCED_CLUSTERS) {
    bias_reduced_case(case, fit, formula, data, terms, ctra_names)
  } else {
    message(case, ": ", n_clusters, " clusters (< ", MIN_BIAS_REDUCED_CLUSTERS, "), no gee_bias_reduced.tsv")
    unlink(file.path(dir, c("gee_bias_reduced.tsv", "gee_bias_reduced_contrasts.tsv")))
  }
}

# ---------------------------------------------------------------------------------------------
# Bias-reduced (Mancl-DeRouen 2001) sandwich of the same GEE, at geepack's alpha
# ---------------------------------------------------------------------------------------------
#
#   V_MD = B^-1 [sum_i X_i' W_i (I - H_ii)^-1 r_i r_i' (I - H_ii)^-T W_i X_i] B^-1,
#   B = sum_i X_i' W_i X_i,  H_ii = X_i B^-1 X_i' W_i,  W_i = R_i(alpha)^-1 (exchangeable)
#
# (the scale phi cancels). Two independent computations, which must agree:
#  1. clubSandwich::vcovCR(type = "CR3") on nlme::gls with corCompSymm(value = alpha, fixed = TRUE):
#     clubSandwich 0.5.8's CR3 adjustment is A_i = (I - X_i M X_i' W_i)^-1 with M = (sum X'WX)^-1 and
#     W_i the inverse of gls's working correlation (CR3, IH_jj_list, weightMatrix.gls, targetVariance.gls),
#     and its sandwich is M [sum X_i' W_i A_i r_i r_i' A_i' W_i X_i] M (vcov_CR; bread.gls = M n / sigma^2,
#     v_scale = n), i.e. exactly V_MD; gls's beta is the GLS solution at alpha, which is geepack's beta.
#  2. the formula above by hand (model matrix, residuals at gls's coefficients): must agree to 1e-8.
# The same by hand at geeglm's coefficients, and CR0 (the plain sandwich) of the gls fit against
# geepack's robust SE, agree to ~1e-5 only: geepack stops its beta/alpha iterations at a tolerance
# (its last beta is the GLS solution at the previous alpha, not exactly at the alpha it reports).

exchangeable_inverse <- function(m, alpha) {
  (diag(m) - alpha / (1 + (m - 1) * alpha) * matrix(1, m, m)) / (1 - alpha)  # R = (1 - a) I + a 11'
}

mancl_derouen_by_hand <- function(X, r, id, alpha) {
  rows <- split(seq_len(nrow(X)), id)
  W <- lapply(rows, function(i) exchangeable_inverse(length(i), alpha))
  B <- Reduce(`+`, Map(function(i, w) crossprod(X[i, , drop = FALSE], w %*% X[i, , drop = FALSE]), rows, W))
  Binv <- solve(B)
  scores <- Map(function(i, w) {
    Xi <- X[i, , drop = FALSE]
    H <- Xi %*% Binv %*% t(Xi) %*% w
    list(md = crossprod(Xi, w %*% solve(diag(length(i)) - H, r[i])), plain = crossprod(Xi, w %*% r[i]))
  }, rows, W)
  sandwich <- function(kind) Binv %*% Reduce(`+`, lapply(scores, function(s) tcrossprod(s[[kind]]))) %*% Binv
  list(md = sandwich("md"), plain = sandwich("plain"))
}

bias_reduced_case <- function(case, fit, formula, data, terms, ctra_names) {
  dir <- file.path(FIXTURES, case)
  alpha <- unname(summary(fit)$corr[1, "Estimate"])
  started <- proc.time()[["elapsed"]]
  g <- gls(formula, data = data, method = "REML",
           correlation = corCompSymm(value = alpha, form = ~ 1 | id, fixed = TRUE))
  stopifnot(abs(unname(coef(g$modelStruct$corStruct, unconstrained = FALSE)) - alpha) < 1e-12)  # held fixed
  cr3 <- vcovCR(g, cluster = data$id, type = "CR3")
  cr0 <- vcovCR(g, cluster = data$id, type = "CR0")
  X <- model.matrix(formula, data = data)
  stopifnot(identical(colnames(X), names(coef(fit))), identical(colnames(X), names(coef(g))))
  hand <- mancl_derouen_by_hand(X, data$z - drop(X %*% coef(g)), data$id, alpha)
  hand_geepack <- mancl_derouen_by_hand(X, data$z - drop(X %*% coef(fit)), data$id, alpha)
  se <- function(V) sqrt(diag(as.matrix(V)))[terms]
  geepack_se <- summary(fit)$coefficients[terms, "Std.err"]
  out <- data.frame(term = ctra_names, r_term = terms, estimate = unname(coef(g)[terms]),
                    se_bias_reduced = unname(se(cr3)), se_bias_reduced_by_hand = unname(se(hand$md)),
                    se_robust_gls = unname(se(cr0)), se_robust_geepack = unname(geepack_se), alpha = alpha,
                    n_clusters = length(unique(data$id)))
  # the two routes agree, and the gls route reproduces geepack (estimates, plain sandwich)
  checks <- c(
    cr3_vs_by_hand = max(abs(out$se_bias_reduced / out$se_bias_reduced_by_hand - 1)),
    cr0_vs_by_hand = max(abs(out$se_robust_gls / se(hand$plain) - 1)),
    by_hand_at_geepack_beta = max(abs(se(hand_geepack$md) / out$se_bias_reduced - 1)),
    by_hand_plain_at_geepack_beta_vs_geepack = max(abs(se(hand_geepack$plain) / geepack_se - 1)),
    gls_cr0_vs_geepack = max(abs(out$se_robust_gls / geepack_se - 1)),
    gls_vs_geepack_estimate = max(abs(coef(g)[terms] - coef(fit)[terms])))
  message(case, ": bias-reduced SE / robust SE ", paste(signif(out$se_bias_reduced / geepack_se, 4), collapse = " "),
          "; checks ", paste(names(checks), signif(checks, 3), sep = " = ", collapse = ", "),
          " (", round(proc.time()[["elapsed"]] - started, 1), " s)")
  stopifnot(checks[c("cr3_vs_by_hand", "cr0_vs_by_hand", "by_hand_plain_at_geepack_beta_vs_geepack")] < 1e-8,
            checks < 1e-3)
  write_tsv(out, file.path(dir, "gee_bias_reduced.tsv"), digits = 12)

  # ctra's gee_genes rows of the ctra score: L'beta, sqrt(L' V_MD L), and a t reference on
  # clusters - columns of the participant-level design (ctra's documented convention, recomputed here:
  # every model-matrix column but the gene intercepts)
  wanted <- read.delim(file.path(dir, "ctra_contrasts.tsv"), colClasses = "character")
  wanted <- wanted[wanted$score == "ctra", ]
  control <- read_design(case)$arm_levels[1]
  beta <- coef(g)
  V <- as.matrix(cr3)
  df <- length(unique(data$id)) - (ncol(X) - (nlevels(data$gene) - 1))
  rows <- lapply(seq_len(nrow(wanted)), function(i) {
    L <- setNames(numeric(length(beta)), names(beta))
    if (wanted$contrast[i] == "arm_x_time") {
      L[coef_interaction(wanted$arm[i], wanted$time[i])] <- 1
    } else {
      L <- change_vector(names(beta), wanted$arm[i], wanted$time[i], control)
    }
    stopifnot(length(L) == length(beta))
    estimate <- sum(L * beta)
    se <- sqrt(drop(t(L) %*% V %*% L))
    data.frame(score = "ctra", contrast = wanted$contrast[i], arm = wanted$arm[i], time = wanted$time[i],
               estimate = estimate, se = se, df = df, t = estimate / se,
               p_value = 2 * pt(-abs(estimate / se), df))
  })
  write_tsv(do.call(rbind, rows), file.path(dir, "gee_bias_reduced_contrasts.tsv"), digits = 12)
}

# ---------------------------------------------------------------------------------------------

genes <- load_gene_sets()
chosen <- commandArgs(trailingOnly = TRUE)
unknown <- setdiff(chosen, names(CASES))
if (length(unknown)) stop("unknown case(s): ", paste(unknown, collapse = ", "), "; cases: ",
                          paste(names(CASES), collapse = ", "))
for (case in if (length(chosen)) chosen else names(CASES)) {
  spec <- CASES[[case]]
  dir <- file.path(FIXTURES, case)
  if (!file.exists(file.path(dir, "design.json"))) {
    message(case, ": no ", file.path(dir, "design.json"), "; run make_inputs.py first. Skipped.")
    next
  }
  design <- read_design(case)
  if (is.null(spec$counts)) {
    message(case, ": simulated on the log2 scale, no counts: model fixtures only")
  } else if (file.exists(spec$counts)) {
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
