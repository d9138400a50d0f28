#!/usr/bin/env Rscript
# Reference values for lnsynth.pairwise.glmm from metafor's rma.glmm(measure = "OR").
#
# Usage: Rscript tests/reference/make_glmm.R [out.json] [seed] [n_random] [with_cmel]
# Defaults write tests/reference/glmm_reference.json with seed 20261201, 4 random
# sparse data sets, and the CM.EL cases (with_cmel = 1; about 10 minutes, CM.EL ML takes 1-2 minutes per
# fit in R).  The live test calls this
# script with a fresh seed, fewer cases and with_cmel = 0 (CM.EL is slow in R).
#
# Needs metafor, metadat and lme4 (Debian: r-cran-metafor r-cran-lme4); CM.EL
# uses metafor's internal non-central hypergeometric density (no BiasedUrn needed).
#
# Tight convergence: glm epsilon 1e-12; glmer with bobyqa for both stages,
# rhoend 1e-12 and PIRLS tolerance tolPwrss 1e-10 (1e-12 makes glmer fail on dat.bcg); for CM.EL see below.  glmer's standard errors come
# from a finite-difference Hessian (lme4's default for nAGQ > 0), so they agree
# with an exact computation to about 1e-6 relative only.
suppressPackageStartupMessages({library(metafor); library(metadat); library(lme4)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/glmm_reference.json"
seed <- if (length(args) >= 2) as.integer(args[2]) else 20261201L
n_random <- if (length(args) >= 3) as.integer(args[3]) else 4L
with_cmel <- if (length(args) >= 4) as.integer(args[4]) == 1L else TRUE
set.seed(seed)

num <- function(x) {
  if (is.null(x) || length(x) == 0) return("null")
  x <- as.numeric(x)
  s <- ifelse(is.na(x) & !is.nan(x), "null",
       ifelse(is.nan(x), "NaN",
       ifelse(is.infinite(x), ifelse(x > 0, "Infinity", "-Infinity"), sprintf("%.17g", x))))
  if (length(s) == 1) s else paste0("[", paste(s, collapse = ","), "]")
}
arr <- function(x) paste0("[", paste(sapply(as.numeric(x), num), collapse = ","), "]")
str_ <- function(x) paste0('"', gsub('"', '\\"', x, fixed = TRUE), '"')
obj <- function(lst) paste0("{", paste(sprintf('"%s":%s', names(lst), unlist(lst)), collapse = ","), "}")

datasets <- list()
add <- function(name, ai, n1i, ci, n2i, cmel = TRUE) {
  datasets[[length(datasets) + 1]] <<- list(name = name, ai = ai, n1i = n1i, ci = ci, n2i = n2i, cmel = cmel)
}
d <- dat.bcg
add("bcg", d$tpos, d$tpos + d$tneg, d$cpos, d$cpos + d$cneg, cmel = FALSE)  # CM.EL: t up to 1004, slow in R
d <- dat.nielweise2007
add("nielweise2007", d$ai, d$n1i, d$ci, d$n2i)
d <- dat.yusuf1985[dat.yusuf1985$table == "6", ]
add("yusuf1985_table6", d$ai, d$n1i, d$ci, d$n2i, cmel = FALSE)
add("k2_sparse", c(10, 0), c(89, 40), c(1, 3), c(88, 41))
add("k3", c(10, 4, 7), c(89, 60, 100), c(1, 6, 12), c(88, 62, 98))
add("no_heterogeneity", c(10, 12, 11, 9), c(100, 100, 100, 100), c(14, 15, 13, 16), c(100, 100, 100, 100),
    cmel = FALSE)
for (i in seq_len(n_random)) {
  k <- c(5, 8, 12, 20)[(i - 1) %% 4 + 1]
  n1 <- sample(20:150, k, replace = TRUE)
  n2 <- sample(20:150, k, replace = TRUE)
  p2 <- plogis(rnorm(k, qlogis(0.05), 0.8))
  theta <- rnorm(k, -0.5, sqrt(c(0, 0.1, 0.4, 1)[(i - 1) %% 4 + 1]))
  p1 <- plogis(qlogis(p2) + theta)
  ai <- rbinom(k, n1, p1)
  ci <- rbinom(k, n2, p2)
  add(sprintf("random_%02d_k%d", i, k), ai, n1, ci, n2, cmel = k <= 5)
}

glmctrl <- list(epsilon = 1e-12, maxit = 1000)
glmerctrl <- list(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6), tolPwrss = 1e-10)
# CM.EL: metafor's own exact density (dnchgcalc = "dnoncenhypergeom"; BiasedUrn's dFNCHypergeo has a
# precision of 1e-7 that shows in the numerical Hessian) and integrate() at rel.tol 1e-10; nlminb keeps its
# defaults (tighter rel.tol makes it report non-convergence).
cmelctrl <- list(dnchgcalc = "dnoncenhypergeom", intCtrl = list(rel.tol = 1e-10, subdivisions = 1000))

configs <- list()
for (m in c("EE", "ML")) configs[[length(configs) + 1]] <- list(model = "UM.FS", method = m, nAGQ = 7, test = "z")
configs[[length(configs) + 1]] <- list(model = "UM.FS", method = "ML", nAGQ = 1, test = "z")
configs[[length(configs) + 1]] <- list(model = "UM.FS", method = "ML", nAGQ = 7, test = "t")
if (with_cmel) for (m in c("EE", "ML")) configs[[length(configs) + 1]] <- list(model = "CM.EL", method = m, nAGQ = 7, test = "z")

cases <- character(0)
for (ds in datasets) for (cf in configs) {
  if (cf$model == "CM.EL" && !ds$cmel) next
  warn <- character(0)
  ctrl <- if (cf$model == "CM.EL") cmelctrl else list(glmCtrl = glmctrl, glmerCtrl = glmerctrl)
  fit <- withCallingHandlers(
    tryCatch(rma.glmm(measure = "OR", ai = ds$ai, n1i = ds$n1i, ci = ds$ci, n2i = ds$n2i, model = cf$model,
                      method = cf$method, nAGQ = cf$nAGQ, test = cf$test, control = ctrl),
             error = function(e) e),
    warning = function(w) { warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning") })
  head <- list(dataset = str_(ds$name), model = str_(cf$model), method = str_(cf$method), nAGQ = num(cf$nAGQ),
               test = str_(cf$test), ai = arr(ds$ai), n1i = arr(ds$n1i), ci = arr(ds$ci), n2i = arr(ds$n2i),
               warnings = paste0("[", paste(sapply(warn, str_), collapse = ","), "]"))
  if (inherits(fit, "error")) {
    cases <- c(cases, obj(c(head, list(ok = "false", error = str_(conditionMessage(fit))))))
    next
  }
  fs <- fit$fit.stats
  vals <- list(ok = "true", k = num(fit$k), estimate = num(fit$beta[1]), se = num(fit$se[1]),
               zval = num(fit$zval[1]), pval = num(fit$pval[1]), ci_lb = num(fit$ci.lb[1]),
               ci_ub = num(fit$ci.ub[1]), tau2 = num(fit$tau2), I2 = num(fit$I2), H2 = num(fit$H2),
               QE_Wld = num(fit$QE.Wld), QEp_Wld = num(fit$QEp.Wld), QE_LRT = num(fit$QE.LRT),
               QEp_LRT = num(fit$QEp.LRT), QE_df = num(fit$QE.df),
               ll = num(fs["ll", "ML"]), dev = num(fs["dev", "ML"]), AIC = num(fs["AIC", "ML"]),
               BIC = num(fs["BIC", "ML"]))
  cases <- c(cases, obj(c(head, vals)))
}
meta <- obj(list(metafor = str_(as.character(packageVersion("metafor"))),
                 lme4 = str_(as.character(packageVersion("lme4"))),
                 R = str_(paste(R.version$major, R.version$minor, sep = ".")), seed = num(seed)))
writeLines(paste0('{"meta":', meta, ',"cases":[', paste(cases, collapse = ",\n"), "]}"), out)
cat("wrote", length(cases), "cases to", out, "\n")
