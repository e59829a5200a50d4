# R reference of ctra's association design (design: association) and its per_gene_t model.
#
#   python tests/reference/association_inputs.py && Rscript tests/reference/make_association_fixtures.R
#
# Reads, per case, the inputs association_inputs.py wrote from ctra's own validate / normalize / score
# code (lm_input.tsv: one row per sample with the predictors, covariates, marker VST and ctra's four
# scores; gene_input.tsv: the used genes' VST; genes.tsv: their group and direction; design.yaml), and
# writes into tests/reference/fixtures/association_<case>/:
#
#   r_composite.tsv   the main model of every score: lm (one draw per participant) or
#                     lmerTest::lmer(REML, + (1 | participant), Satterthwaite df) with several;
#                     estimate, se, df, t, p_value per predictor term (ctra's term names)
#   r_per_gene_t.tsv  the as-published test: each gene's z (scale(), direction-signed for ctra,
#                     unsigned within its group for a subscore) fitted on the same model, the term's
#                     coefficients averaged, one-sample t over genes (df = genes - 1)
#
# Cases: multidraw (simulated, inputs committed in fixtures/association_multidraw/) and hrs (the Cole 2015
# HRS cohort; inputs in results/reference_association/hrs/, not tracked; skipped when absent).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})

script_path <- function() {
  arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  if (length(arg) == 0) return(normalizePath("tests/reference/make_association_fixtures.R"))
  normalizePath(sub("^--file=", "", arg[1]))
}
HERE <- dirname(script_path())
REPO <- normalizePath(file.path(HERE, "..", ".."))
FIXTURES <- file.path(HERE, "fixtures")
SCORES <- c("ctra", "inflammatory", "antiviral", "antibody")
CASES <- list(
  multidraw = file.path(FIXTURES, "association_multidraw"),
  hrs = file.path(REPO, "results", "reference_association", "hrs")
)

read_yaml_list <- function(path) {
  # design.yaml is flat: key: value or key: [..] / block lists; parse the few keys we need
  lines <- readLines(path)
  out <- list(); key <- NULL
  for (line in lines) {
    if (grepl("^[a-z_]+:", line)) {
      key <- sub(":.*", "", line); value <- trimws(sub("^[a-z_]+:", "", line))
      out[[key]] <- if (value %in% c("", "[]")) character(0) else if (value == "null") NULL else value
    } else if (grepl("^- ", line) && !is.null(key)) {
      out[[key]] <- c(out[[key]], trimws(sub("^- ", "", line)))
    }
  }
  out
}

model_frame <- function(data, design) {
  for (name in c(design$categorical, if (!is.null(design$time)) "time")) {
    data[[name]] <- factor(as.character(data[[name]]), levels = unique(as.character(data[[name]])))
  }
  data
}

rhs <- function(design) {
  terms <- c(design$predictors, if (!is.null(design$time)) "time", design$covariates, design$markers)
  paste(terms, collapse = " + ")
}

ctra_terms <- function(design, data) {
  # ctra's names of the predictor columns and R's coefficient names
  out <- data.frame(term = character(0), r_term = character(0))
  for (p in design$predictors) {
    if (is.factor(data[[p]])) {
      levels <- levels(data[[p]])[-1]
      out <- rbind(out, data.frame(term = sprintf("%s[T.%s]", p, levels), r_term = paste0(p, levels)))
    } else {
      out <- rbind(out, data.frame(term = p, r_term = p))
    }
  }
  out
}

fit_coefficients <- function(y, data, design, repeated) {
  data$y <- y
  if (repeated) {
    m <- lmerTest::lmer(as.formula(paste("y ~", rhs(design), "+ (1 | participant)")), data = data, REML = TRUE)
    s <- summary(m, ddf = "Satterthwaite")$coefficients
    list(coef = s[, "Estimate"], se = s[, "Std. Error"], df = s[, "df"], p = s[, "Pr(>|t|)"])
  } else {
    m <- lm(as.formula(paste("y ~", rhs(design))), data = data)
    s <- summary(m)$coefficients
    list(coef = s[, "Estimate"], se = s[, "Std. Error"], df = setNames(rep(m$df.residual, nrow(s)), rownames(s)), p = s[, "Pr(>|t|)"])
  }
}

run_case <- function(name, dir) {
  if (!file.exists(file.path(dir, "lm_input.tsv"))) {
    message(sprintf("%s: %s absent, skipped (run tests/reference/association_inputs.py)", name, dir))
    return(invisible(NULL))
  }
  design <- read_yaml_list(file.path(dir, "design.yaml"))
  data <- read.delim(file.path(dir, "lm_input.tsv"), check.names = FALSE, stringsAsFactors = FALSE,
                     colClasses = c(sample = "character", participant = "character"))
  data <- model_frame(data, design)
  expression <- read.delim(file.path(dir, "gene_input.tsv"), check.names = FALSE)
  stopifnot(identical(as.character(expression$sample), as.character(data$sample)))
  genes <- read.delim(file.path(dir, "genes.tsv"), stringsAsFactors = FALSE)
  repeated <- any(duplicated(data$participant))
  terms <- ctra_terms(design, data)
  composite <- list(); per_gene <- list()
  z <- scale(as.matrix(expression[, genes$gene, drop = FALSE]))
  for (score in SCORES) {
    fit <- fit_coefficients(data[[score]], data, design, repeated)
    composite[[score]] <- data.frame(
      score = score, term = terms$term, estimate = fit$coef[terms$r_term], se = fit$se[terms$r_term],
      df = fit$df[terms$r_term], t = fit$coef[terms$r_term] / fit$se[terms$r_term], p_value = fit$p[terms$r_term]
    )
    chosen <- if (score == "ctra") seq_len(nrow(genes)) else which(genes$group == score)
    if (length(chosen) < 2) next
    sign <- if (score == "ctra") genes$direction[chosen] else rep(1, length(chosen))
    coefs <- sapply(seq_along(chosen), function(i) {
      fit_coefficients(z[, chosen[i]] * sign[i], data, design, repeated)$coef[terms$r_term]
    })
    coefs <- matrix(coefs, nrow = nrow(terms))
    k <- length(chosen)
    mean <- rowMeans(coefs); se <- apply(coefs, 1, sd) / sqrt(k); t <- mean / se
    per_gene[[score]] <- data.frame(
      score = score, term = terms$term, estimate = mean, se = se, df = k - 1, t = t,
      p_value = 2 * pt(-abs(t), k - 1), n_genes = k
    )
  }
  out <- file.path(FIXTURES, paste0("association_", name))
  dir.create(out, showWarnings = FALSE, recursive = TRUE)
  write <- function(frame, file) {
    write.table(format(do.call(rbind, frame), digits = 17), file.path(out, file), sep = "\t", quote = FALSE,
                row.names = FALSE)
  }
  write(composite, "r_composite.tsv")
  write(per_gene, "r_per_gene_t.tsv")
  message(sprintf("%s: %d samples, %s; written to %s", name, nrow(data), if (repeated) "lmer" else "lm", out))
}

args <- commandArgs(trailingOnly = TRUE)
for (name in if (length(args)) args else names(CASES)) run_case(name, CASES[[name]])
writeLines(capture.output(sessionInfo()), file.path(FIXTURES, "association_sessionInfo.txt"))
