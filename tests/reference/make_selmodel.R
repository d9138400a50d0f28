#!/usr/bin/env Rscript
# Reference values for lnsynth.pairwise.selection_model from metafor's selmodel().
#
# Usage: Rscript tests/reference/make_selmodel.R [out.json]
# Default output: tests/reference/selmodel_reference.json
#
# Tight control: optimizer nlminb with rel.tol 1e-15 (relaxed to 1e-13 ... 1e-10, nlminb's default,
# where nlminb reports false convergence; the value used is stored per case) (metafor's default optim/BFGS
# uses finite-difference gradients with step 1e-3, which limits the estimates to
# about 1e-6); the integrals of the continuous selection functions use
# rel.tol 1e-12 with 10000 subdivisions (metafor's default is 1.2e-4).
# Standard errors come from metafor's own numerical Hessian (numDeriv, r = 6) at
# the optimum, exactly as selmodel() reports them.  Needs metafor, metadat, numDeriv
# (Debian: r-cran-numderiv) and jsonlite; takes about 5 minutes (the continuous types
# integrate at rel.tol 1e-12).
suppressPackageStartupMessages({library(metafor); library(metadat); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/selmodel_reference.json"

hack <- escalc(measure = "OR", ai = NULL, yi = yi, vi = vi, data = dat.hackshaw1998)
bang <- dat.bangertdrowns2004

tight <- list(optimizer = "nlminb", rel.tol = 1e-15, eval.max = 10000, iter.max = 10000,
              intCtrl = list(rel.tol = 1e-12, subdivisions = 10000L))

cases <- list(
  list(id = "hackshaw_ML_step_025", data = "hack", method = "ML", type = "stepfun", steps = c(0.025)),
  list(id = "hackshaw_ML_step_3", data = "hack", method = "ML", type = "stepfun", steps = c(0.025, 0.10, 0.50)),
  list(id = "hackshaw_ML_step_two_sided", data = "hack", method = "ML", type = "stepfun", steps = c(0.05),
       alternative = "two.sided"),
  list(id = "hackshaw_ML_beta", data = "hack", method = "ML", type = "beta"),
  list(id = "hackshaw_ML_halfnorm", data = "hack", method = "ML", type = "halfnorm"),
  list(id = "hackshaw_ML_negexp", data = "hack", method = "ML", type = "negexp"),
  list(id = "hackshaw_ML_logistic", data = "hack", method = "ML", type = "logistic"),
  list(id = "hackshaw_ML_power", data = "hack", method = "ML", type = "power"),
  list(id = "hackshaw_FE_step_025", data = "hack", method = "FE", type = "stepfun", steps = c(0.025)),
  list(id = "hackshaw_FE_negexp", data = "hack", method = "FE", type = "negexp"),
  list(id = "hackshaw_tau2fixed_step_2", data = "hack", method = "REML", tau2 = 0.03, type = "stepfun",
       steps = c(0.025, 0.5)),
  list(id = "hackshaw_DL_step_less", data = "hack", method = "DL", type = "stepfun", steps = c(0.05),
       alternative = "less"),
  list(id = "bangert_REML_step_025", data = "bang", method = "REML", type = "stepfun", steps = c(0.025)),
  list(id = "bangert_REML_step_3", data = "bang", method = "REML", type = "stepfun", steps = c(0.025, 0.05, 0.5)),
  list(id = "bangert_REML_beta", data = "bang", method = "REML", type = "beta"),
  list(id = "bangert_REML_halfnorm", data = "bang", method = "REML", type = "halfnorm"),
  list(id = "bangert_REML_logistic_less", data = "bang", method = "REML", type = "logistic", alternative = "less"),
  list(id = "bangert_REML_power", data = "bang", method = "REML", type = "power")
)

num <- function(x) if (is.null(x)) NA else as.numeric(x)
res <- list()
for (cs in cases) {
  d <- if (cs$data == "hack") hack else bang
  fit <- if (is.null(cs$tau2)) rma(yi, vi, data = d, method = cs$method)
         else rma(yi, vi, data = d, method = cs$method, tau2 = cs$tau2)
  alt <- if (is.null(cs$alternative)) "greater" else cs$alternative
  fitsel <- function(ctrl) {
    if (is.null(cs$steps)) selmodel(fit, type = cs$type, alternative = alt, control = ctrl)
    else selmodel(fit, type = cs$type, steps = cs$steps, alternative = alt, control = ctrl)
  }
  # nlminb can report false convergence at the tightest tolerance: relax in steps
  sel <- NULL
  for (rt in c(1e-15, 1e-13, 1e-12, 1e-11, 1e-10)) {
    ctrl <- tight; ctrl$rel.tol <- rt
    sel <- tryCatch(fitsel(ctrl), error = function(e) NULL)
    if (!is.null(sel)) break
  }
  if (is.null(sel)) stop("selmodel failed for case ", cs$id)
  res[[cs$id]] <- list(
    id = cs$id, yi = as.numeric(d$yi), vi = as.numeric(d$vi), method = cs$method, type = cs$type,
    tau2_fixed = if (is.null(cs$tau2)) NULL else cs$tau2,
    steps_in = if (is.null(cs$steps)) NULL else as.numeric(cs$steps), alternative = alt,
    estimate = num(sel$beta), se = num(sel$se), tau2 = num(sel$tau2), se_tau2 = num(sel$se.tau2),
    delta = as.numeric(sel$delta), se_delta = as.numeric(sel$se.delta),
    ci_low = num(sel$ci.lb), ci_high = num(sel$ci.ub), ll = num(sel$ll), ll0 = num(sel$ll0),
    LRT = num(sel$LRT), LRTdf = num(sel$LRTdf), LRTp = num(sel$LRTp),
    LRT_tau2 = num(sel$LRT.tau2), LRTp_tau2 = num(sel$LRTp.tau2), steps = as.numeric(sel$steps),
    k = sel$k, nlminb_rel_tol = rt)
}
meta <- list(generator = "tests/reference/make_selmodel.R",
             metafor = as.character(packageVersion("metafor")), R = R.version.string,
             control = "optimizer nlminb rel.tol 1e-15; intCtrl rel.tol 1e-12, subdivisions 10000")
writeLines(toJSON(list(meta = meta, cases = res), auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                  pretty = FALSE), out)
cat("wrote", out, "\n")
