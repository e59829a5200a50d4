# Reference fits for ctra's outcome, within/between, dose and mediation models (issue 13).
# Input: fixtures/outcomes/cohort.tsv (make_outcome_cohort.py). Output: fixtures/outcomes/lmer.tsv, lm.tsv.
#   Rscript tests/reference/make_outcome_fixtures.R   (from the repository root)
suppressPackageStartupMessages(library(lmerTest))
dir <- "tests/reference/fixtures/outcomes"
d <- read.delim(file.path(dir, "cohort.tsv"), na.strings = "NA")
d$arm <- factor(d$arm, levels = c("control", "kind", "self"))
d$time <- factor(d$time, levels = c("pre", "post"))
rows <- list()
grab <- function(fit, term, analysis) {
  s <- summary(fit)$coefficients
  data.frame(analysis = analysis, term = term, estimate = s[term, "Estimate"], se = s[term, "Std. Error"],
             df = s[term, "df"], p_value = s[term, "Pr(>|t|)"])
}
# (a) the outcome's own arm x time model, rows with the outcome
o <- d[!is.na(d$wellbeing), ]
fit <- lmer(wellbeing ~ arm * time + age + (1 | participant), data = o, REML = TRUE)
for (arm in c("kind", "self")) rows[[length(rows) + 1]] <- grab(fit, paste0("arm", arm, ":timepost"), "outcome_arm_x_time")
# (b) within / between
o$between_raw <- ave(o$wellbeing, o$participant)
person_means <- tapply(o$wellbeing, o$participant, mean)
o$within <- o$wellbeing - o$between_raw
o$between <- o$between_raw - mean(person_means)
fit <- lmer(ctra ~ arm * time + age + within + between + (1 | participant), data = o, REML = TRUE)
rows[[length(rows) + 1]] <- grab(fit, "within", "within_person")
rows[[length(rows) + 1]] <- grab(fit, "between", "between_person")
# (c) dose within the active arms
a <- d[d$arm != "control", ]
a$arm <- droplevels(a$arm)
a$dose <- a$acts - mean(a$acts)
fit <- lmer(ctra ~ arm * time + age + dose + dose:time + (1 | participant), data = a, REML = TRUE)
rows[[length(rows) + 1]] <- grab(fit, "timepost:dose", "dose_x_time")
write.table(do.call(rbind, rows), file.path(dir, "lmer.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
# (d) mediation paths by lm on change scores, arm kind vs control, complete pairs
pre <- d[d$time == "pre", ]
post <- d[d$time == "post", ]
m <- merge(pre, post, by = "participant", suffixes = c("_pre", "_post"))
m$dM <- m$wellbeing_post - m$wellbeing_pre
m$dS <- m$ctra_post - m$ctra_pre
m <- m[m$arm_pre %in% c("control", "kind") & !is.na(m$dM), ]
m$T <- as.numeric(m$arm_pre == "kind")
m$age <- m$age_pre
out <- list()
path <- function(fit, term, name) {
  s <- summary(fit)$coefficients
  data.frame(path = name, estimate = s[term, "Estimate"], se = s[term, "Std. Error"], p_value = s[term, "Pr(>|t|)"])
}
fa <- lm(dM ~ T + age, data = m)
fb <- lm(dS ~ T + dM + age, data = m)
fc <- lm(dS ~ T + age, data = m)
out <- rbind(path(fa, "T", "a"), path(fb, "dM", "b"), path(fb, "T", "direct"), path(fc, "T", "total"))
out$n <- nrow(m)
write.table(out, file.path(dir, "lm.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
# (e) the indirect effect's percentile bootstrap CI by boot::boot (stratified by arm, 20,000 resamples):
# an independent implementation; it agrees with ctra's up to Monte Carlo error (different random numbers)
suppressPackageStartupMessages(library(boot))
indirect <- function(data, i) {
  d <- data[i, ]
  a <- coef(lm(dM ~ T + age, data = d))["T"]
  b <- coef(lm(dS ~ T + dM + age, data = d))["dM"]
  a * b
}
set.seed(20261201)
bs <- boot(m, indirect, R = 20000, strata = m$T)
ci <- boot.ci(bs, type = "perc")$percent[4:5]
write.table(data.frame(path = "indirect", estimate = bs$t0, ci_low = ci[1], ci_high = ci[2], n_boot = 20000),
            file.path(dir, "boot.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
