#!/usr/bin/env Rscript
# Reference values for lnsynth.pairwise.multilevel from metafor's three-level model
#   rma.mv(yi, vi, random = ~ 1 | cluster/es)      (es: one id per row)
#
# Usage: Rscript tests/reference/make_multilevel.R [out.json] [seed]
# Defaults write tests/reference/multilevel_reference.json with seed 20261207.
#
# Data: metadat's dat.konstantopoulos2011 (district/school) and dat.assink2016 (study/esid) when
# metadat is installed, and simulated three-level data sets (fixed seed; the data are stored in the
# JSON), including two picked because one variance component is estimated on the boundary (0).
# Tight convergence: nlminb with rel.tol = 1e-12, iter.max = 1000, eval.max = 5000 (1e-10 and a restart
# where nlminb reports false convergence), or optim's BFGS (reltol 1e-15) where that reaches a higher
# log-likelihood (the JSON records optimizer and rel_tol per case).  metafor
# optimises log(sigma2), so a boundary estimate is a tiny positive number here (0 in lnsynth).
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/multilevel_reference.json"
seed <- if (length(args) >= 2) as.integer(args[2]) else 20261207L
set.seed(seed)
has_metadat <- requireNamespace("metadat", quietly = TRUE)
ctrl <- list(rel.tol = 1e-12, iter.max = 1000, eval.max = 5000)

fit <- function(yi, vi, cluster, method = "REML", test = "z", level = 95) {
  es <- seq_along(yi)
  # nlminb reports false convergence (code 1) on dat.assink2016 at rel.tol 1e-12; 1e-10 then
  for (rt in c(1e-12, 1e-10)) {
    r <- tryCatch(rma.mv(yi, vi, random = ~ 1 | cluster / es, method = method, test = test, level = level,
                         control = modifyList(ctrl, list(rel.tol = rt))), error = function(e) NULL)
    if (!is.null(r)) break
  }
  if (is.null(r)) stop("rma.mv did not converge")
  r$rel_tol <- rt
  if (rt > 1e-12) {  # polish: restart at the estimate with rel.tol 1e-12 (kept when nlminb converges)
    r2 <- tryCatch(rma.mv(yi, vi, random = ~ 1 | cluster / es, method = method, test = test, level = level,
                          control = modifyList(ctrl, list(sigma2.init = pmax(r$sigma2, 1e-10)))),
                   error = function(e) NULL)
    if (!is.null(r2) && logLik(r2) >= logLik(r)) { r <- r2; r$rel_tol <- 1e-12 }
  }
  r$optimizer <- "nlminb"
  # nlminb can stop short of the maximum (dat.assink2016, sim_large: ~1e-6 in zval); optim's BFGS
  # with reltol 1e-15 is kept where its log-likelihood is higher
  r3 <- tryCatch(rma.mv(yi, vi, random = ~ 1 | cluster / es, method = method, test = test, level = level,
                        control = list(optimizer = "BFGS", reltol = 1e-15, maxit = 10000)),
                 error = function(e) NULL)
  if (!is.null(r3) && logLik(r3) > logLik(r)) { r3$rel_tol <- NA; r3$optimizer <- "BFGS"; r <- r3 }
  r
}

cases <- list()
add <- function(name, yi, vi, cluster, method = "REML", test = "z", level = 95, note = "") {
  r <- fit(yi, vi, cluster, method, test, level)
  fs <- fitstats(r)
  cases[[length(cases) + 1]] <<- list(
    name = name, note = note, optimizer = r$optimizer, rel_tol = r$rel_tol, method = method, test = test, level = level / 100,
    yi = as.numeric(yi), vi = as.numeric(vi), cluster = as.character(cluster),
    estimate = as.numeric(r$beta), se = r$se, zval = r$zval, pval = r$pval,
    ci_low = r$ci.lb, ci_high = r$ci.ub, sigma2 = as.numeric(r$sigma2),
    QE = r$QE, QEp = r$QEp, loglik = as.numeric(logLik(r)),
    deviance = fs[2, 1], aic = fs[3, 1], bic = fs[4, 1], aicc = fs[5, 1],
    k = r$k, n_clusters = r$s.nlevels[1], df = if (test == "t") r$ddf[[1]] else NA)
}

sim <- function(m, sizes, s1, s2, mu = 0.3) {
  cl <- rep(seq_len(m), sizes)
  k <- length(cl)
  vi <- runif(k, 0.01, 0.2)
  yi <- mu + rnorm(m, 0, sqrt(s1))[cl] + rnorm(k, 0, sqrt(s2)) + rnorm(k, 0, sqrt(vi))
  list(yi = round(yi, 6), vi = round(vi, 6), cluster = paste0("c", cl))
}

if (has_metadat) {
  d <- metadat::dat.konstantopoulos2011
  for (mt in c("REML", "ML")) add(paste0("konstantopoulos2011_", mt), d$yi, d$vi, d$district, mt)
  add("konstantopoulos2011_REML_t", d$yi, d$vi, d$district, "REML", "t")
  add("konstantopoulos2011_ML_t_90", d$yi, d$vi, d$district, "ML", "t", 90)
  a <- metadat::dat.assink2016
  add("assink2016_REML", a$yi, a$vi, a$study)
  add("assink2016_ML", a$yi, a$vi, a$study, "ML")
}

s <- sim(15, sample(1:6, 15, replace = TRUE), 0.1, 0.05)
add("sim_unbalanced_REML", s$yi, s$vi, s$cluster)
add("sim_unbalanced_ML", s$yi, s$vi, s$cluster, "ML")
add("sim_unbalanced_REML_t", s$yi, s$vi, s$cluster, "REML", "t")
s <- sim(30, sample(2:5, 30, replace = TRUE), 0.2, 0.1, -0.2)
add("sim_large_REML", s$yi, s$vi, s$cluster)
add("sim_large_ML", s$yi, s$vi, s$cluster, "ML")
s <- sim(3, c(2, 2, 3), 0.05, 0.05)
add("sim_small_k7_REML", s$yi, s$vi, s$cluster)
s <- sim(8, rep(4, 8), 0.3, 0.02, 1)
add("sim_balanced_REML", s$yi, s$vi, s$cluster)

# boundary cases: the first simulated data sets whose estimate of one component is (numerically) 0
for (j in 1:2) {
  for (tries in 1:500) {
    s <- if (j == 1) sim(10, sample(2:4, 10, replace = TRUE), 0, 0.1) else sim(10, sample(2:4, 10, replace = TRUE), 0.1, 0)
    r <- tryCatch(fit(s$yi, s$vi, s$cluster), error = function(e) NULL)  # nlminb may stop at the boundary
    if (!is.null(r) && r$sigma2[j] < 1e-8 &&
        !is.null(tryCatch(fit(s$yi, s$vi, s$cluster, "ML"), error = function(e) NULL))) break
  }
  nm <- c("between", "within")[j]
  add(paste0("sim_boundary_", nm, "_REML"), s$yi, s$vi, s$cluster,
      note = sprintf("sigma2[%d] estimated at the boundary (metafor: %.3g)", j, r$sigma2[j]))
  if (tries == 500) stop("no boundary data set found")
  add(paste0("sim_boundary_", nm, "_ML"), s$yi, s$vi, s$cluster, "ML")
}

res <- list(generator = "tests/reference/make_multilevel.R",
            metafor = as.character(packageVersion("metafor")), R = R.version.string, seed = seed,
            control = ctrl, cases = cases)
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, na = "null", pretty = FALSE), out)
cat(sprintf("wrote %d cases to %s\n", length(cases), out))
