#!/usr/bin/env Rscript
# Reference values for lnsynth.pairwise.location_scale: metafor's location-scale models
#   rma(yi, vi, mods = ~ x, scale = ~ z, method = "ML" / "REML")      (tau2_i = exp(alpha0 + alpha1 z_i))
#
# Usage: Rscript tests/reference/make_location_scale.R [out.json] [seed]
# Defaults write tests/reference/location_scale_reference.json with seed 20261208.
#
# Tight convergence: optimizer BFGS with reltol 1e-15 (maxit 10000); the JSON stores logLik, so a test can
# tell which fit is closer to the maximum.  se of alpha: metafor's numerical Hessian (pracma's, see ctrl).  Data: dat.bcg with
# scale ~ ablat (location ~ 1 and ~ ablat) and simulated data (fixed seed, stored in the JSON).
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/location_scale_reference.json"
seed <- if (length(args) >= 2) as.integer(args[2]) else 20261208L
set.seed(seed)
ctrl <- list(optimizer = "BFGS", reltol = 1e-15, maxit = 10000)
# metafor's default Hessian (numDeriv, Richardson r = 8) is off by up to 3e-4 in se(alpha) on dat.bcg with
# scale ~ ablat; pracma's agrees with the analytic Hessian to ~1e-7, so it is used when installed
if (requireNamespace("pracma", quietly = TRUE)) ctrl$hesspack <- "pracma"

cases <- list()
add <- function(name, yi, vi, x, z, method) {
  a <- list(yi = yi, vi = vi, scale = ~ z, method = method, control = ctrl)
  if (!is.null(x)) a$mods <- ~ x
  r <- do.call(rma, a)
  cases[[length(cases) + 1]] <<- list(
    name = name, method = method, yi = as.numeric(yi), vi = as.numeric(vi),
    x = if (is.null(x)) NULL else as.numeric(x), z = as.numeric(z),
    beta = as.numeric(r$beta), se = as.numeric(r$se), zval = as.numeric(r$zval), pval = as.numeric(r$pval),
    ci_low = as.numeric(r$ci.lb), ci_high = as.numeric(r$ci.ub),
    alpha = as.numeric(r$alpha), se_alpha = as.numeric(r$se.alpha), zval_alpha = as.numeric(r$zval.alpha),
    pval_alpha = as.numeric(r$pval.alpha), ci_low_alpha = as.numeric(r$ci.lb.alpha),
    ci_high_alpha = as.numeric(r$ci.ub.alpha), tau2 = as.numeric(r$tau2), QS = r$QS, QSp = r$QSp,
    QM = if (is.null(x)) NA else r$QM, QMp = if (is.null(x)) NA else r$QMp, loglik = as.numeric(logLik(r)))
}

dat <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
for (m in c("REML", "ML")) {
  add(paste0("bcg_scale_ablat_", m), dat$yi, dat$vi, NULL, dat$ablat, m)
  add(paste0("bcg_loc_ablat_scale_year_", m), dat$yi, dat$vi, dat$ablat, dat$year - 1960, m)
}
for (s in 1:3) {
  k <- sample(20:40, 1)
  vi <- rexp(k, 20) + 0.005
  x <- rnorm(k)
  z <- rnorm(k)
  tau2 <- exp(-2 + 0.8 * z)
  yi <- 0.2 + 0.3 * x + rnorm(k, 0, sqrt(vi + tau2))
  for (m in c("REML", "ML")) add(sprintf("sim%d_%s", s, m), yi, vi, x, z, m)
}
writeLines(toJSON(list(metafor = as.character(packageVersion("metafor")), seed = seed,
                       hesspack = if (is.null(ctrl$hesspack)) "numDeriv" else ctrl$hesspack, cases = cases),
                  digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE), out)
