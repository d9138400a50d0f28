#!/usr/bin/env Rscript
# Reference values for lnsynth.pairwise.tau2 (tau^2 estimators HS, HSk and GENQ of metafor's rma.uni).
#
# Usage: Rscript tests/reference/make_tau2_estimators.R [out.json] [seed]
# Defaults write tests/reference/tau2_estimators_reference.json with seed 20261208.
#
# Data: dat.bcg (metadat; log risk ratios), intercept-only and with the moderator ablat, and simulated data sets
# (fixed seed; the data are stored in the JSON).  GENQ uses the weights given in the JSON (rma(weights=)).
# The estimators are closed form: no convergence settings matter.
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/tau2_estimators_reference.json"
seed <- if (length(args) >= 2) as.integer(args[2]) else 20261208L
set.seed(seed)

cases <- list()
add <- function(name, yi, vi, method, x = NULL, weights = NULL) {
  a <- list(yi = yi, vi = vi, method = method)
  if (!is.null(x)) a$mods <- cbind(x)
  if (!is.null(weights)) a$weights <- weights
  r <- do.call(rma, a)
  pr <- predict(r)
  cases[[length(cases) + 1]] <<- list(
    name = name, method = method, yi = as.numeric(yi), vi = as.numeric(vi),
    x = if (is.null(x)) NULL else as.numeric(x), weights = if (is.null(weights)) NULL else as.numeric(weights),
    tau2 = r$tau2, se_tau2 = r$se.tau2, beta = as.numeric(r$beta), se = as.numeric(r$se),
    zval = as.numeric(r$zval), pval = as.numeric(r$pval), ci_low = as.numeric(r$ci.lb),
    ci_high = as.numeric(r$ci.ub), QE = r$QE, QEp = r$QEp, I2 = r$I2, H2 = r$H2,
    QM = r$QM, QMp = r$QMp, R2 = if (is.null(r$R2)) NA else r$R2,
    pi_low = if (is.null(x)) as.numeric(pr$pi.lb) else NA, pi_high = if (is.null(x)) as.numeric(pr$pi.ub) else NA)
}

dat <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
n <- with(dat.bcg, tpos + tneg + cpos + cneg)
for (m in c("HS", "HSk")) {
  add(paste0("bcg_", m), dat$yi, dat$vi, m)
  add(paste0("bcg_ablat_", m), dat$yi, dat$vi, m, x = dat$ablat)
}
add("bcg_GENQ_n", dat$yi, dat$vi, "GENQ", weights = n)
add("bcg_GENQ_ones", dat$yi, dat$vi, "GENQ", weights = rep(1, length(n)))
add("bcg_ablat_GENQ_n", dat$yi, dat$vi, "GENQ", x = dat$ablat, weights = n)
for (s in 1:4) {
  k <- sample(5:25, 1)
  vi <- rexp(k, 10) + 0.01
  tau2 <- c(0, 0.02, 0.1, 0.4)[s]
  yi <- rnorm(k, 0.2, sqrt(vi + tau2))
  x <- rnorm(k)
  w <- rpois(k, 50) + 1
  for (m in c("HS", "HSk")) {
    add(sprintf("sim%d_%s", s, m), yi, vi, m)
    add(sprintf("sim%d_x_%s", s, m), yi, vi, m, x = x)
  }
  add(sprintf("sim%d_GENQ", s), yi, vi, "GENQ", weights = w)
  add(sprintf("sim%d_x_GENQ", s), yi, vi, "GENQ", x = x, weights = w)
}
writeLines(toJSON(list(metafor = as.character(packageVersion("metafor")), seed = seed, cases = cases),
                  digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE), out)
