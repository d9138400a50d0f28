#!/usr/bin/env Rscript
# Reference values for lnsynth.pairwise.permutation: metafor's exact permutation tests (permutest, exact = TRUE
# or automatically exact when the number of distinct permutations is at most iter = 1000).
#
# Usage: Rscript tests/reference/make_permutest.R [out.json] [seed]
# Defaults write tests/reference/permutest_reference.json with seed 20261208.
#
# Intercept-only models: all 2^k sign flips of yi; meta-regressions: all distinct permutations of the rows of
# the design matrix.  Exact tests do not depend on R's random numbers, so Python reproduces them exactly.
# Data: simulated (fixed seed; stored in the JSON) and the first 10 studies of dat.bcg.  REML uses Fisher
# scoring with threshold 1e-13 and PM uniroot with tol 1e-13 (so that no p-value sits on a convergence-sized tie).
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/permutest_reference.json"
seed <- if (length(args) >= 2) as.integer(args[2]) else 20261208L
set.seed(seed)
tight <- list(threshold = 1e-13, maxiter = 10000, tol = 1e-13)  # Fisher scoring (REML) and uniroot (PM)

cases <- list()
add <- function(name, yi, vi, x = NULL, method = "REML", test = "z") {
  a <- list(yi = yi, vi = vi, method = method, test = test, control = tight)
  if (!is.null(x)) a$mods <- as.matrix(x)
  r <- do.call(rma, a)
  pt <- permutest(r, exact = TRUE, progbar = FALSE)
  cases[[length(cases) + 1]] <<- list(
    name = name, method = method, test = test, yi = as.numeric(yi), vi = as.numeric(vi),
    X = if (is.null(x)) NULL else unname(as.matrix(x)),
    zval = as.numeric(r$zval), QM = r$QM, pval = as.numeric(pt$pval), QMp = pt$QMp,
    n_perm = pt$exact.iter)
}

for (s in 1:2) {
  k <- 8
  vi <- rexp(k, 10) + 0.01
  yi <- rnorm(k, 0.15, sqrt(vi + 0.05))
  add(sprintf("sim%d_int_REML", s), yi, vi)
  add(sprintf("sim%d_int_DL_knha", s), yi, vi, method = "DL", test = "knha")
}
dat <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)[1:10, ]
add("bcg10_int_REML", dat$yi, dat$vi)
add("bcg10_int_PM", dat$yi, dat$vi, method = "PM")

k <- 6
vi <- rexp(k, 10) + 0.01
x <- rnorm(k)
yi <- 0.1 + 0.3 * x + rnorm(k, 0, sqrt(vi + 0.02))
add("reg_k6_x_REML", yi, vi, x = cbind(x))
add("reg_k6_x_DL_knha", yi, vi, x = cbind(x), method = "DL", test = "knha")
k <- 9
vi <- rexp(k, 10) + 0.01
g <- c(1, 1, 1, 1, 0, 0, 0, 0, 0)
yi <- 0.1 - 0.3 * g + rnorm(k, 0, sqrt(vi + 0.02))
add("reg_k9_binary_REML", yi, vi, x = cbind(g))
k <- 8
vi <- rexp(k, 10) + 0.01
x <- c(1, 1, 1, 2, 2, 2, 3, 3)
yi <- 0.3 * x + rnorm(k, 0, sqrt(vi + 0.05))
add("reg_k8_ties_REML", yi, vi, x = cbind(x))
add("reg_k8_ties_FE", yi, vi, x = cbind(x), method = "FE")
writeLines(toJSON(list(metafor = as.character(packageVersion("metafor")), seed = seed, cases = cases),
                  digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE, matrix = "rowmajor"), out)
