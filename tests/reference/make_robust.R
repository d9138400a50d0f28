#!/usr/bin/env Rscript
# Reference values for lnsynth.pairwise.robust: metafor's robust() (CR1, clubSandwich = FALSE) and
# robust(..., clubSandwich = TRUE) (CR2, Satterthwaite df, HTZ Wald test; needs the clubSandwich package).
#
# Usage: Rscript tests/reference/make_robust.R [out.json] [seed]
# Defaults write tests/reference/robust_reference.json with seed 20261208.
#
# Fits: rma.uni intercept-only and meta-regressions (dat.bcg with cluster = alloc; simulated data with 8-12
# clusters and two moderators), and the three-level rma.mv(yi, vi, random = ~ 1 | cluster/es) with
# cluster = the outer level (dat.konstantopoulos2011 and a simulated set).  The fitted model (tau2 or sigma2)
# is stored with each case, so the test checks the sandwich at metafor's own variance components as well.
# rma.uni REML uses Fisher scoring with threshold 1e-13; rma.mv is fitted with nlminb, rel.tol 1e-12 (1e-10 or 1e-8 where nlminb reports false convergence).
suppressPackageStartupMessages({library(metafor); library(jsonlite); library(clubSandwich)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/robust_reference.json"
seed <- if (length(args) >= 2) as.integer(args[2]) else 20261208L
set.seed(seed)

fitmv <- function(yi, vi, cl) {
  es <- seq_along(yi)
  for (rt in c(1e-12, 1e-10, 1e-8)) {  # nlminb can report false convergence at 1e-12
    r <- tryCatch(rma.mv(yi, vi, random = ~ 1 | cl / es,
                         control = list(rel.tol = rt, iter.max = 1000, eval.max = 5000)), error = function(e) NULL)
    if (!is.null(r)) return(r)
  }
  stop("rma.mv did not converge")
}

tight <- list(threshold = 1e-13, maxiter = 10000)  # REML Fisher scoring to full precision
cases <- list()
rec <- function(name, model, fit, cluster, yi, vi, X, cr2) {
  rob <- do.call(robust, list(x = fit, cluster = cluster, clubSandwich = cr2))
  cases[[length(cases) + 1]] <<- list(
    name = name, model = model, type = if (cr2) "CR2" else "CR1", method = fit$method, test = fit$test,
    yi = as.numeric(yi), vi = as.numeric(vi), X = if (is.null(X)) NULL else unname(as.matrix(X)),
    cluster = as.character(cluster),
    tau2 = if (model == "uni") fit$tau2 else NA, sigma2 = if (model == "mv") as.numeric(fit$sigma2) else NA,
    beta = as.numeric(rob$beta), se = as.numeric(rob$se), tval = as.numeric(rob$zval),
    pval = as.numeric(rob$pval), df = as.numeric(rob$ddf), ci_low = as.numeric(rob$ci.lb),
    ci_high = as.numeric(rob$ci.ub), QM = as.numeric(rob$QM), QMdf = as.numeric(rob$QMdf),
    QMp = as.numeric(rob$QMp), vb = unname(as.matrix(rob$vb)), n = rob$n)
}

dat <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
for (cr2 in c(FALSE, TRUE)) {
  r <- rma(yi, vi, data = dat, control = tight)
  rec("bcg_int_REML", "uni", r, dat$alloc, dat$yi, dat$vi, NULL, cr2)
  r <- rma(yi, vi, mods = ~ ablat, data = dat, control = tight)
  rec("bcg_ablat_REML", "uni", r, dat$alloc, dat$yi, dat$vi, cbind(1, dat$ablat), cr2)
  r <- rma(yi, vi, mods = ~ ablat, data = dat, method = "DL", test = "knha")
  rec("bcg_ablat_DL_knha", "uni", r, dat$alloc, dat$yi, dat$vi, cbind(1, dat$ablat), cr2)
  r <- rma(yi, vi, data = dat, method = "FE")
  rec("bcg_int_FE", "uni", r, dat$alloc, dat$yi, dat$vi, NULL, cr2)
}
for (s in 1:3) {
  m <- sample(8:12, 1)
  size <- sample(1:5, m, replace = TRUE)
  cl <- rep(seq_len(m), size)
  k <- length(cl)
  x1 <- rnorm(k)
  x2 <- rbinom(k, 1, 0.5)
  vi <- rexp(k, 10) + 0.01
  u <- rnorm(m, 0, 0.2)[cl]
  yi <- 0.2 + 0.1 * x1 - 0.2 * x2 + u + rnorm(k, 0, sqrt(vi))
  for (cr2 in c(FALSE, TRUE)) {
    r <- rma(yi, vi, mods = ~ x1 + x2, control = tight)
    rec(sprintf("sim%d_x1x2_REML", s), "uni", r, cl, yi, vi, cbind(1, x1, x2), cr2)
    r <- rma(yi, vi, control = tight)
    rec(sprintf("sim%d_int_REML", s), "uni", r, cl, yi, vi, NULL, cr2)
    r <- fitmv(yi, vi, cl)
    rec(sprintf("sim%d_mv_REML", s), "mv", r, cl, yi, vi, NULL, cr2)
  }
}
d <- metadat::dat.konstantopoulos2011
for (cr2 in c(FALSE, TRUE)) {
  r <- fitmv(d$yi, d$vi, d$district)
  rec("konstantopoulos_mv_REML", "mv", r, d$district, d$yi, d$vi, NULL, cr2)
}
writeLines(toJSON(list(metafor = as.character(packageVersion("metafor")),
                       clubSandwich = as.character(packageVersion("clubSandwich")), seed = seed, cases = cases),
                  digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE, matrix = "rowmajor"), out)
