# Reference random-effects meta-analyses for tests/test_synthesis.py, made with metafor.
#
#   Rscript tests/reference/make_meta_fixtures.R      (from the repository root; Debian's r-cran-metafor)
#
# Reads every tests/reference/fixtures/meta/<case>_input.tsv (columns study, yi, vi) and writes
# <case>_metafor.tsv: one row per quantity. It first writes the `bcg` case's input from metafor's own
# dat.bcg (13 published BCG vaccine trials, log risk ratios by escalc), so that case is published data.
# CI does not run this: the fixtures are committed and the tests only read them.
suppressPackageStartupMessages(library(metafor))
dir <- "tests/reference/fixtures/meta"
bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
write.table(data.frame(study = paste0(bcg$author, " ", bcg$year), yi = as.numeric(bcg$yi), vi = as.numeric(bcg$vi)),
            file.path(dir, "bcg_input.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
tight <- list(threshold = 1e-12, maxiter = 10000, stepadj = 0.5)
for (input in sort(list.files(dir, pattern = "_input\\.tsv$", full.names = TRUE))) {
  case <- sub("_input\\.tsv$", "", basename(input))
  d <- read.delim(input, colClasses = c(study = "character"))
  reml <- rma(yi, vi, data = d, method = "REML", test = "knha", control = tight)
  pred <- predict(reml)  # metafor's default after test = "knha": t with k - 1 df (ctra's pi_low_k1 / pi_high_k1)
  riley <- predict(reml, pi.type = "riley")  # t with k - 2 df (Higgins 2009): meta.tsv's pi_low / pi_high
  dl <- rma(yi, vi, data = d, method = "DL", test = "z")
  rows <- data.frame(
    analysis = "random_effects_reml_hk", study = "pooled",
    quantity = c("estimate", "se", "ci_low", "ci_high", "p_value", "tau2", "i2", "h2", "q", "q_p",
                 "pi_low_k1", "pi_high_k1"),
    value = c(reml$b[1], reml$se, reml$ci.lb, reml$ci.ub, reml$pval, reml$tau2, reml$I2, reml$H2, reml$QE, reml$QEp,
              pred$pi.lb, pred$pi.ub))
  if (nrow(d) >= 3) {  # ctra gives no prediction interval below 3 studies (metafor's riley floors the df at 1)
    rows <- rbind(rows, data.frame(analysis = "random_effects_reml_hk", study = "pooled",
                                   quantity = c("pi_low", "pi_high"), value = c(riley$pi.lb, riley$pi.ub)))
  }
  rows <- rbind(rows, data.frame(
    analysis = "random_effects_dl", study = "pooled",
    quantity = c("estimate", "se", "ci_low", "ci_high", "tau2", "i2", "h2"),
    value = c(dl$b[1], dl$se, dl$ci.lb, dl$ci.ub, dl$tau2, dl$I2, dl$H2)))
  if (nrow(d) >= 3) {
    loo <- leave1out(reml)
    for (i in seq_len(nrow(d))) {
      rows <- rbind(rows, data.frame(
        analysis = "leave_one_out", study = d$study[i],
        quantity = c("estimate", "se", "ci_low", "ci_high", "tau2", "i2"),
        value = c(loo$estimate[i], loo$se[i], loo$ci.lb[i], loo$ci.ub[i], loo$tau2[i], loo$I2[i])))
    }
  }
  write.table(format(rows, digits = 15), file.path(dir, paste0(case, "_metafor.tsv")), sep = "\t", quote = FALSE,
              row.names = FALSE)
}
writeLines(capture.output(sessionInfo()), file.path(dir, "sessionInfo.txt"))
