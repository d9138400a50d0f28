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
ds_json <- sapply(datasets, function(ds) obj(list(name = str_(ds$name), measure = str_(ds$measure),
                                                   yi = arr(ds$yi), vi = arr(ds$vi))))
meta <- obj(list(metafor = str_(as.character(packageVersion("metafor"))), R = str_(R.version.string),
                 seed = num(seed), created = str_(format(Sys.time(), "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"))))
writeLines(paste0('{"meta":', meta, ',\n"datasets":[\n', paste(ds_json, collapse = ",\n"),
                  '],\n"cases":[\n', paste(cases, collapse = ",\n"), "]}"), out)
cat("wrote", length(cases), "cases for", length(datasets), "data sets to", out, "\n")
