#!/usr/bin/env Rscript
# Reference values for lnsynth.pairwise from metafor (rma(), confint(), predict()).
#
# Usage: Rscript tests/reference/make_pairwise.R [out.json] [seed] [n_random]
# Defaults write tests/reference/pairwise_reference.json with seed 20261128.
# The live test calls this script with a fresh seed and compares.
#
# Tight convergence: threshold/tol 1e-12, maxiter 10000, stepadj 0.5 (metafor's
# Fisher scoring diverges on some data with the default step).  confint() gets
# tau2.min = 0 and tau2.max = max(100, 10 * tau2) explicitly (its defaults) so
# that a tau2.max passed to rma() for PM/EB does not leak into the CI search.
# Every fit records whether it converged and whether metafor warned; a case
# whose fit errors is recorded with ok = false and its fields null.
suppressPackageStartupMessages({library(metafor); library(metadat)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/pairwise_reference.json"
seed <- if (length(args) >= 2) as.integer(args[2]) else 20261128L
n_random <- if (length(args) >= 3) as.integer(args[3]) else 36L
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
add <- function(name, yi, vi, measure = "GEN") {
  datasets[[length(datasets) + 1]] <<- list(name = name, yi = as.numeric(yi), vi = as.numeric(vi), measure = measure)
}
# classic data sets
d <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
add("bcg_logRR", d$yi, d$vi, "RR")
d <- escalc(measure = "OR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
add("bcg_logOR", d$yi, d$vi, "OR")
d <- escalc(measure = "MD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = dat.normand1999)
add("normand1999_MD", d$yi, d$vi, "MD")
add("hackshaw1998_logOR", dat.hackshaw1998$yi, dat.hackshaw1998$vi, "OR")
add("raudenbush1985_SMD", dat.raudenbush1985$yi, dat.raudenbush1985$vi, "SMD")
d <- escalc(measure = "ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
add("molloy2014_ZCOR", d$yi, d$vi, "ZCOR")
# edge cases
add("k1", 0.3, 0.04)
add("k2", c(0.1, 0.9), c(0.05, 0.08))
add("k2_close", c(0.1, 0.12), c(0.05, 0.08))
add("identical_yi", rep(0.25, 6), c(0.1, 0.2, 0.05, 0.3, 0.15, 0.02))
add("tiny_vi", c(0.01, 0.03, -0.02, 0.05, 0.00), c(1e-6, 2e-6, 5e-7, 1e-6, 3e-6))
add("huge_vi", c(1.5, -3, 8, 0.2, 4), c(50, 120, 300, 80, 60))
add("mixed_vi", c(0.2, 0.5, -0.1, 0.3, 1.2, 0.0), c(1e-4, 0.5, 2, 1e-3, 10, 0.05))
# REML likelihood with a boundary maximum at 0 and a higher interior one that a coarse grid misses
add("hidden_mode", c(0.92293296166650995, -0.22415658570984276, 0.22753724585280521, -1.4092354466385837, 0.2409960853429769, 0.4747073478881122, -2.4616982621506347, -1.5839800189083624, -0.90368216515992217, 0.10605939980908341, -2.8125448867268377, 0.031539185299409744, -0.23258744048334662, -0.8626968010903463, 1.6662353126796967, -1.0421785494794089, -0.82825827882353897, 0.19293407587335981, -0.16137260334074388, 0.20221958613519964),
    c(1.1550721014561118, 1.5451373236245702, 0.12906621542842392, 0.96404980876615498, 0.41675103041010786, 0.7080877823558569, 1.5289547243914969, 1.3722095153014207, 1.0720819299107656, 0.15789524002077218, 1.3824158026961677, 0.89736384036338812, 0.069268167273065215, 0.99394801697203272, 0.35191459224013166, 0.86421137820063765, 0.23751816061919245, 0.9572663022472635, 0.036648946282408432, 1.0602284321042741))
add("huge_tau2", c(-30, 45, 12, 80, -60, 5, 22), c(1, 2, 0.5, 1.5, 3, 1, 2))
# random data sets
ks <- c(1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 40)
tau2s <- c(0, 0, 0.005, 0.05, 0.3, 1, 4, 400)
for (i in seq_len(n_random)) {
  k <- ks[(i - 1) %% length(ks) + 1]
  tau2 <- tau2s[(i - 1) %% length(tau2s) + 1]
  vi <- runif(k, 0.01, 0.5) * exp(rnorm(1, 0, 1))
  yi <- rnorm(k, rnorm(1, 0, 0.5), sqrt(vi + tau2))
  add(sprintf("random_%02d_k%d_tau2_%g", i, k, tau2), yi, vi)
}

methods <- c("FE", "DL", "HE", "SJ", "ML", "REML", "PM", "EB")
tests <- c("z", "knha")
cases <- character(0)
for (di in seq_along(datasets)) {
  ds <- datasets[[di]]
  for (m in methods) for (tt in tests) {
    warn <- character(0)
    ctrl <- list(threshold = 1e-12, tol = 1e-12, maxiter = 10000, stepadj = 0.5)
    if (m %in% c("PM", "EB")) ctrl$tau2.max <- 1e8
    fit <- withCallingHandlers(
      tryCatch(rma(ds$yi, ds$vi, method = m, test = tt, control = ctrl), error = function(e) e),
      warning = function(w) { warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning") })
    rec <- list(dataset = str_(ds$name), method = str_(m), test = str_(tt))
    if (inherits(fit, "error")) {
      rec$ok <- "false"; rec$error <- str_(conditionMessage(fit))
      cases <- c(cases, obj(rec)); next
    }
    # polish: restart from the converged value with a threshold relative to tau2
    # (an absolute 1e-12 leaves ~1e-9 relative error when tau2 is ~1e-3)
    if (m %in% c("ML", "REML", "EB", "PM") && fit$k > 1 && fit$tau2 > 0) {
      ctrl2 <- ctrl
      ctrl2$tau2.init <- fit$tau2
      ctrl2$threshold <- max(1e-16, 1e-14 * fit$tau2)
      ctrl2$tol <- max(1e-16, 1e-14 * fit$tau2)
      fit2 <- tryCatch(suppressWarnings(rma(ds$yi, ds$vi, method = m, test = tt, control = ctrl2)),
                       error = function(e) NULL)
      if (!is.null(fit2) && abs(fit2$tau2 - fit$tau2) <= 1e-8 * max(fit$tau2, 1e-4)) fit <- fit2
    }
    pr <- predict(fit)
    # predict() gives no PI for fixed-effect models; by definition (tau2 = 0) it equals the CI
    if (is.null(pr$pi.lb)) { pr$pi.lb <- pr$ci.lb; pr$pi.ub <- pr$ci.ub }
    ci <- list(lb = NA, ub = NA)
    if (!(m %in% c("FE")) && fit$k > 1) {
      cc <- tryCatch(suppressWarnings(confint(fit, control = list(tol = 1e-13, maxiter = 10000, tau2.min = 0,
                                                         tau2.max = max(100, 10 * fit$tau2)))),
                     error = function(e) NULL)
      if (!is.null(cc)) ci <- list(lb = cc$random["tau^2", "ci.lb"], ub = cc$random["tau^2", "ci.ub"])
    }
    score <- NA
    if (m %in% c("ML", "REML") && fit$k > 1) {
      w <- 1 / (ds$vi + fit$tau2); mu <- sum(w * ds$yi) / sum(w); r <- ds$yi - mu
      score <- sum(w^2 * r^2) - sum(w) + if (m == "REML") sum(w^2) / sum(w) else 0
    }
    rec$ok <- "true"
    rec$warnings <- paste0("[", paste(sapply(warn, str_), collapse = ","), "]")
    rec$estimate <- num(fit$beta[1]); rec$se <- num(fit$se); rec$zval <- num(fit$zval)
    rec$pvalue <- num(fit$pval); rec$ci_low <- num(fit$ci.lb); rec$ci_high <- num(fit$ci.ub)
    rec$tau2 <- num(fit$tau2); rec$se_tau2 <- num(fit$se.tau2)
    rec$tau2_ci_low <- num(ci$lb); rec$tau2_ci_high <- num(ci$ub)
    rec$i2 <- num(fit$I2); rec$h2 <- num(fit$H2); rec$q <- num(fit$QE); rec$q_pvalue <- num(fit$QEp)
    rec$pi_low <- num(pr$pi.lb); rec$pi_high <- num(pr$pi.ub); rec$k <- num(fit$k)
    rec$score_at_tau2 <- num(score)
    cases <- c(cases, obj(rec))
  }
}
## ---------------------------------------------------------------- extras (issue 14 item 3)
# fixed tau2, tau2.init, confint (QP, PL; tau2, tau, I2, H2), anova (LRT, Wald), residuals,
# rstandard, blup, ranef.  Convergence: threshold/tol 1e-12 for rma(), tol 1e-13 for confint().
# Written for the stored reference only (no seed argument); the live test (fresh seed) skips them.
make_extras <- length(args) < 2
jx <- function(x) {
  if (is.null(x)) return("null")
  if (is.list(x)) {
    body <- vapply(x, jx, "")
    if (!is.null(names(x))) return(paste0("{", paste0("\"", names(x), "\":", body, collapse = ","), "}"))
    return(paste0("[", paste(body, collapse = ","), "]"))
  }
  if (is.character(x)) { s <- paste0("\"", x, "\""); return(if (length(x) == 1 && !inherits(x, "AsIs")) s else paste0("[", paste(s, collapse = ","), "]")) }
  if (is.logical(x) && all(!is.na(x))) { s <- ifelse(x, "true", "false"); return(if (length(x) == 1 && !inherits(x, "AsIs")) s else paste0("[", paste(s, collapse = ","), "]")) }
  s <- vapply(as.numeric(x), num, "")
  if (length(x) == 1 && !inherits(x, "AsIs")) s else paste0("[", paste(s, collapse = ","), "]")
}
V <- function(x) I(as.numeric(x))
ctl <- list(threshold = 1e-12, tol = 1e-12, maxiter = 10000, stepadj = 0.5)
ds_by <- setNames(datasets, sapply(datasets, function(d) d$name))
fitrec <- function(fit) {
  pr <- predict(fit)
  if (is.null(pr$pi.lb)) { pr$pi.lb <- pr$ci.lb; pr$pi.ub <- pr$ci.ub }
  list(estimate = fit$beta[1], se = fit$se[1], zval = fit$zval[1], pvalue = fit$pval[1], ci_low = fit$ci.lb[1],
       ci_high = fit$ci.ub[1], tau2 = fit$tau2, se_tau2 = if (is.null(fit$se.tau2)) NA else fit$se.tau2,
       i2 = fit$I2, h2 = fit$H2, q = fit$QE, q_pvalue = fit$QEp, pi_low = pr$pi.lb[1], pi_high = pr$pi.ub[1])
}
ex <- list()
if (make_extras) {
# fixed tau2 ------------------------------------------------------------------------------
fixed <- list()
for (nm in c("bcg_logRR", "normand1999_MD", "k2", "hackshaw1998_logOR")) for (t2 in c(0, 0.05, 0.3, 2))
  for (tt in c("z", "knha")) {
    d <- ds_by[[nm]]
    fit <- suppressWarnings(rma(d$yi, d$vi, tau2 = t2, method = "REML", test = tt, control = ctl))
    fixed[[length(fixed) + 1]] <- c(list(dataset = nm, tau2_fixed = t2, test = tt), fitrec(fit))
  }
ex$fixed_tau2 <- fixed
# tau2.init ---------------------------------------------------------------------------------
init <- list()
for (nm in c("bcg_logRR", "normand1999_MD", "hackshaw1998_logOR")) for (ti in c(0.01, 0.2, 3)) {
  d <- ds_by[[nm]]
  fit <- rma(d$yi, d$vi, method = "SJ", control = c(ctl, list(tau2.init = ti)))
  init[[length(init) + 1]] <- c(list(dataset = nm, method = "SJ", tau2_init = ti, test = "z"), fitrec(fit))
}
for (nm in c("hidden_mode", "bcg_logRR")) for (m in c("REML", "ML")) for (ti in c(0, 0.01, 0.5, 2)) {
  d <- ds_by[[nm]]
  fit <- tryCatch(suppressWarnings(rma(d$yi, d$vi, method = m, control = c(ctl, list(tau2.init = ti)))),
                  error = function(e) NULL)
  if (is.null(fit)) next
  init[[length(init) + 1]] <- c(list(dataset = nm, method = m, tau2_init = ti, test = "z"), fitrec(fit))
}
ex$tau2_init <- init
# confint ----------------------------------------------------------------------------------
cis <- list()
ci_sets <- c("bcg_logRR", "bcg_logOR", "normand1999_MD", "hackshaw1998_logOR", "raudenbush1985_SMD",
             "molloy2014_ZCOR", "k2", "k2_close", "huge_vi", "mixed_vi", "huge_tau2")
for (nm in ci_sets) for (m in c("REML", "ML", "DL", "PM")) for (type in c("QP", "PL")) for (lev in c(95, 90)) {
  if (type == "PL" && !(m %in% c("REML", "ML"))) next
  d <- ds_by[[nm]]
  fit <- suppressWarnings(rma(d$yi, d$vi, method = m, control = ctl))
  cc <- tryCatch(suppressWarnings(confint(fit, type = type, level = lev, control = list(tol = 1e-13, maxiter = 10000))),
                 error = function(e) NULL)
  if (is.null(cc)) next
  r <- cc$random
  cis[[length(cis) + 1]] <- list(dataset = nm, method = m, type = type, level = lev / 100,
    tau2 = V(r["tau^2", ]), tau = V(r["tau", ]), i2 = V(r["I^2(%)", ]), h2 = V(r["H^2", ]))
}
bcg_ci <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
for (m in c("REML", "ML", "DL")) for (type in c("QP", "PL")) {
  if (type == "PL" && m == "DL") next
  fit <- rma(yi, vi, mods = ~ ablat, method = m, data = bcg_ci, control = ctl)
  r <- confint(fit, type = type, control = list(tol = 1e-13, maxiter = 10000))$random
  cis[[length(cis) + 1]] <- list(dataset = "bcg_logRR", mods = "ablat", method = m, type = type, level = 0.95,
    tau2 = V(r["tau^2", ]), tau = V(r["tau", ]), i2 = V(r["I^2(%)", ]), h2 = V(r["H^2", ]))
}
ex$confint <- cis
# anova -------------------------------------------------------------------------------------
bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
fs <- function(fit) V(fit$fit.stats[, if (fit$method == "REML") "REML" else "ML"])  # ll, dev, AIC, BIC, AICc
lrt <- list()
pairs <- list(
  list(name = "ML ablat vs intercept", f = list(mods = ~ ablat, method = "ML"), r = list(mods = ~ 1, method = "ML")),
  list(name = "ML ablat+year vs ablat", f = list(mods = ~ ablat + year, method = "ML"), r = list(mods = ~ ablat, method = "ML")),
  list(name = "REML vs FE (intercept)", f = list(mods = ~ 1, method = "REML"), r = list(mods = ~ 1, method = "FE")),
  list(name = "ML vs FE (ablat)", f = list(mods = ~ ablat, method = "ML"), r = list(mods = ~ ablat, method = "FE")),
  list(name = "FE ablat vs FE intercept", f = list(mods = ~ ablat, method = "FE"), r = list(mods = ~ 1, method = "FE")))
for (pp in pairs) {
  ff <- rma(yi, vi, mods = pp$f$mods, method = pp$f$method, data = bcg, control = ctl)
  rr <- rma(yi, vi, mods = pp$r$mods, method = pp$r$method, data = bcg, control = ctl)
  a <- anova(ff, rr)
  lrt[[length(lrt) + 1]] <- list(name = pp$name, full_mods = as.character(pp$f$mods)[2], full_method = pp$f$method,
    reduced_mods = as.character(pp$r$mods)[2], reduced_method = pp$r$method,
    fit_stats_full = fs(ff), fit_stats_reduced = fs(rr), parms_full = ff$parms, parms_reduced = rr$parms,
    lrt = a$LRT, df = a$parms.f - a$parms.r, pvalue = a$pval, qe_full = ff$QE, qe_reduced = rr$QE,
    tau2_full = ff$tau2, tau2_reduced = rr$tau2, r2 = if (is.null(a$R2)) NA else a$R2)
}
ex$lrt <- lrt
wald <- list()
for (tt in c("z", "knha")) for (m in c("REML", "DL")) {
  ff <- rma(yi, vi, mods = ~ ablat + year, method = m, test = tt, data = bcg, control = ctl)
  for (btt in list(2, 2:3, 3)) {
    a <- anova(ff, btt = btt)
    wald[[length(wald) + 1]] <- list(mods = "ablat + year", method = m, test = tt, btt = V(btt - 1),
      qm = a$QM, qm_df = V(a$QMdf), qm_pvalue = a$QMp)
  }
  L <- rbind(c(1, 20, 1970), c(0, 1, -1))
  a <- anova(ff, X = L)
  wald[[length(wald) + 1]] <- list(mods = "ablat + year", method = m, test = tt, L = lapply(1:2, function(i) V(L[i, ])),
    estimate = V(a$Xb), se = V(a$se), zval = V(a$zval), pvalue = V(a$pval), qm = a$QM, qm_df = V(a$QMdf),
    qm_pvalue = a$QMp)
}
ex$wald <- wald
# residuals, rstandard, blup, ranef ------------------------------------------------------------
resl <- list()
for (spec in list(list(m = "REML", t = "z", mods = ~ 1), list(m = "REML", t = "knha", mods = ~ 1),
                  list(m = "DL", t = "z", mods = ~ 1), list(m = "FE", t = "z", mods = ~ 1),
                  list(m = "ML", t = "z", mods = ~ ablat), list(m = "REML", t = "knha", mods = ~ ablat + year))) {
  fit <- rma(yi, vi, mods = spec$mods, method = spec$m, test = spec$t, data = bcg, control = ctl)
  rs <- rstandard(fit); b <- blup(fit)
  rec <- list(method = spec$m, test = spec$t, mods = as.character(spec$mods)[2],
    resid = V(residuals(fit)), pearson = V(residuals(fit, type = "pearson")),
    rstandard_resid = V(rs$resid), rstandard_se = V(rs$se), rstandard_z = V(rs$z),
    blup_pred = V(b$pred), blup_se = V(b$se), blup_pi_low = V(b$pi.lb), blup_pi_high = V(b$pi.ub))
  if (spec$m != "FE") {
    re <- ranef(fit)
    rec$ranef_pred <- V(re$pred); rec$ranef_se <- V(re$se); rec$ranef_pi_low <- V(re$pi.lb); rec$ranef_pi_high <- V(re$pi.ub)
    rc <- rstandard(fit, type = "conditional")
    rec$rstandard_cond_resid <- V(rc$resid); rec$rstandard_cond_se <- V(rc$se)
  }
  resl[[length(resl) + 1]] <- rec
}
ex$residuals <- resl
ex$bcg <- list(yi = V(bcg$yi), vi = V(bcg$vi), ablat = V(bcg$ablat), year = V(bcg$year))
}
extras_json <- if (make_extras) jx(ex) else "null"

ds_json <- sapply(datasets, function(ds) obj(list(name = str_(ds$name), measure = str_(ds$measure),
                                                   yi = arr(ds$yi), vi = arr(ds$vi))))
meta <- obj(list(metafor = str_(as.character(packageVersion("metafor"))), R = str_(R.version.string),
                 seed = num(seed), created = str_(format(Sys.time(), "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"))))
writeLines(paste0('{"meta":', meta, ',\n"datasets":[\n', paste(ds_json, collapse = ",\n"),
                  '],\n"cases":[\n', paste(cases, collapse = ",\n"), "],\n\"extras\":", extras_json, "}"), out)
cat("wrote", length(cases), "cases for", length(datasets), "data sets to", out, "\n")
