#!/usr/bin/env Rscript
# Reference values for lnsynth.pairwise.{regression,subgroup,influence,bias,gosh} from metafor.
#
# Usage: Rscript tests/reference/make_sensitivity.R [out.json] [seed] [n_random]
# Defaults write tests/reference/sensitivity_reference.json with seed 20261128.
# The live test calls this script with a fresh seed (and fewer data sets) and compares.
#
# Tight convergence everywhere: control = list(threshold = 1e-12, tol = 1e-12,
# maxiter = 10000, stepadj = 0.5).  Every fit is wrapped in try(); a failed case
# is recorded with ok = false.
suppressPackageStartupMessages({library(metafor); library(metadat)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/sensitivity_reference.json"
seed <- if (length(args) >= 2) as.integer(args[2]) else 20261128L
n_random <- if (length(args) >= 3) as.integer(args[3]) else 8L
section <- if (length(args) >= 4) args[4] else "all"   # all | regression | diagnostics
do_reg <- section %in% c("all", "regression")
do_diag <- section %in% c("all", "diagnostics")
set.seed(seed)
ctrl <- list(threshold = 1e-12, tol = 1e-12, maxiter = 10000, stepadj = 0.5)

num1 <- function(x) {
  if (is.null(x) || length(x) == 0) return("null")
  x <- as.numeric(x)[1]
  if (is.na(x) && !is.nan(x)) return("null")
  if (is.nan(x)) return("NaN")
  if (is.infinite(x)) return(ifelse(x > 0, "Infinity", "-Infinity"))
  sprintf("%.17g", x)
}
arr <- function(x) paste0("[", paste(vapply(as.numeric(x), num1, ""), collapse = ","), "]")
sarr <- function(x) paste0("[", paste0('"', as.character(x), '"', collapse = ","), "]")
str_ <- function(x) paste0('"', gsub('"', '\\"', x, fixed = TRUE), '"')
obj <- function(lst) paste0("{", paste(sprintf('"%s":%s', names(lst), unlist(lst)), collapse = ","), "}")
lst_json <- function(xs) paste0("[", paste(unlist(xs), collapse = ","), "]")
bool <- function(x) ifelse(isTRUE(x), "true", "false")

# ------------------------------------------------------------------------------------------
# meta-regression
# ------------------------------------------------------------------------------------------
methods <- c("FE", "DL", "HE", "SJ", "ML", "REML", "PM", "EB")
tests <- c("z", "knha")
reg_cases <- list()
reg_data <- list()
add_reg_data <- function(name, yi, vi, mods) {
  reg_data[[length(reg_data) + 1]] <<- list(name = name, yi = as.numeric(yi), vi = as.numeric(vi), mods = mods)
}
d <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
add_reg_data("bcg", d$yi, d$vi, data.frame(ablat = d$ablat, alloc = d$alloc, year = d$year,
                                            stringsAsFactors = FALSE))
for (i in seq_len(n_random)) {
  k <- sample(c(6, 8, 10, 15, 25, 40), 1)
  tau2 <- sample(c(0, 0.02, 0.1, 0.5, 2), 1)
  x1 <- round(rnorm(k, 0, 1), 3)
  g <- sample(c("a", "b", "c"), k, replace = TRUE)
  g[1:3] <- c("a", "b", "c")
  vi <- round(runif(k, 0.01, 0.5), 5)
  yi <- round(0.2 + 0.3 * x1 + (g == "b") * 0.4 + rnorm(k, 0, sqrt(vi + tau2)), 5)
  add_reg_data(sprintf("random%02d", i), yi, vi, data.frame(x1 = x1, g = g, stringsAsFactors = FALSE))
}
specs <- list(bcg = list(c("ablat"), c("alloc"), c("ablat", "alloc"), c("ablat", "year")),
              random = list(c("x1"), c("g"), c("x1", "g")))
for (dd in if (do_reg) reg_data else list()) {
  sp <- if (dd$name == "bcg") specs$bcg else specs$random
  for (vars in sp) {
    fml <- as.formula(paste("~", paste(vars, collapse = " + ")))
    for (m in methods) for (tt in tests) {
      res <- try(suppressWarnings(rma(dd$yi, dd$vi, mods = fml, data = dd$mods, method = m, test = tt,
                                      control = ctrl)), silent = TRUE)
      ok <- !inherits(res, "try-error")
      case <- list(data = str_(dd$name), mods = sarr(vars), method = str_(m), test = str_(tt), ok = bool(ok))
      if (ok) {
        r2 <- if (is.null(res$R2)) NA else res$R2
        tau2_0 <- NA
        if (m != "FE") {
          r0 <- try(suppressWarnings(rma(dd$yi, dd$vi, method = m, control = ctrl)), silent = TRUE)
          if (!inherits(r0, "try-error")) tau2_0 <- r0$tau2
        }
        case <- c(case, list(names = sarr(rownames(res$beta)), coefficients = arr(res$beta), se = arr(res$se),
                             zval = arr(res$zval), pvalue = arr(res$pval), ci_low = arr(res$ci.lb),
                             ci_high = arr(res$ci.ub), tau2 = num1(res$tau2), se_tau2 = num1(res$se.tau2),
                             qm = num1(res$QM), qm_pvalue = num1(res$QMp), qe = num1(res$QE),
                             qe_pvalue = num1(res$QEp), i2 = num1(res$I2), h2 = num1(res$H2), r2 = num1(r2),
                             tau2_0 = num1(tau2_0), k = num1(res$k), p = num1(res$p)))
      }
      reg_cases[[length(reg_cases) + 1]] <- obj(case)
    }
  }
}
# subgroup analyses: separate tau2 (per-group rma + FE model on the estimates) and common tau2 (mods)
sub_cases <- list()
for (dd in if (do_reg) reg_data else list()) {
  fac <- if (dd$name == "bcg") "alloc" else "g"
  grp <- dd$mods[[fac]]
  lev <- sort(unique(grp))
  for (m in c("DL", "REML", "FE")) for (tt in tests) {
    sep <- lapply(lev, function(l) rma(dd$yi[grp == l], dd$vi[grp == l], method = m, test = tt, control = ctrl))
    est <- sapply(sep, function(r) c(r$beta)); se <- sapply(sep, function(r) r$se); t2 <- sapply(sep, function(r) r$tau2)
    fe <- rma(est, sei = se, mods = ~ factor(lev), method = "FE")
    com <- rma(dd$yi, dd$vi, mods = ~ factor(grp), method = m, test = tt, control = ctrl)
    pr <- predict(com, newmods = diag(length(lev))[, -1, drop = FALSE])
    sub_cases[[length(sub_cases) + 1]] <- obj(list(data = str_(dd$name), factor = str_(fac), method = str_(m),
      test = str_(tt), groups = sarr(lev), separate_estimate = arr(est), separate_se = arr(se),
      separate_tau2 = arr(t2), q_between = num1(fe$QM), q_between_pvalue = num1(fe$QMp), qm = num1(com$QM),
      qm_pvalue = num1(com$QMp), common_estimate = arr(pr$pred), common_se = arr(pr$se)))
  }
}
# influence diagnostics of meta-regression models
infreg_cases <- list()
for (dd in if (do_reg) reg_data else list()) {
  fml <- if (dd$name == "bcg") ~ ablat else ~ x1
  for (m in c("FE", "DL", "REML")) for (tt in tests) {
    res <- try(suppressWarnings(rma(dd$yi, dd$vi, mods = fml, data = dd$mods, method = m, test = tt, control = ctrl)),
               silent = TRUE)
    if (inherits(res, "try-error")) next
    inf <- try(suppressWarnings(influence(res)), silent = TRUE)
    if (inherits(inf, "try-error")) next
    infreg_cases[[length(infreg_cases) + 1]] <- obj(list(data = str_(dd$name), mods = sarr(all.vars(fml)),
      method = str_(m), test = str_(tt), rstudent = arr(inf$inf$rstudent), dffits = arr(inf$inf$dffits),
      cook_d = arr(inf$inf$cook.d), cov_r = arr(inf$inf$cov.r), tau2_del = arr(inf$inf$tau2.del),
      qe_del = arr(inf$inf$QE.del), hat = arr(inf$inf$hat), weight = arr(inf$inf$weight),
      dfbs = arr(do.call(cbind, unclass(inf$dfbs)[seq_len(res$p)])), flagged = arr(as.numeric(inf$is.infl))))
  }
}
reg_data_json <- lapply(reg_data, function(dd) {
  cols <- lapply(dd$mods, function(col) if (is.numeric(col)) arr(col) else sarr(col))
  obj(list(name = str_(dd$name), yi = arr(dd$yi), vi = arr(dd$vi), mods = obj(cols)))
})

# ------------------------------------------------------------------------------------------
# single-model diagnostics: leave1out, cumul, influence, regtest, ranktest, trimfill, fsn
# ------------------------------------------------------------------------------------------
sets <- list()
add_set <- function(name, yi, vi) sets[[length(sets) + 1]] <<- list(name = name, yi = as.numeric(yi), vi = as.numeric(vi))
add_set("bcg", d$yi, d$vi)
add_set("hackshaw1998", dat.hackshaw1998$yi, dat.hackshaw1998$vi)
for (i in seq_len(n_random)) {
  k <- sample(c(4, 5, 7, 10, 14, 20), 1)
  tau2 <- sample(c(0, 0.05, 0.3), 1)
  vi <- round(runif(k, 0.005, 0.6), 5)
  mu <- 0.3
  yi <- rnorm(k, mu, sqrt(vi + tau2))
  # small-study asymmetry on a random side for some sets
  side <- sample(c(0, 1, -1), 1)
  yi <- round(yi + side * 1.2 * sqrt(vi), 5)
  add_set(sprintf("random%02d", i), yi, vi)
}
add_set("ties", c(0.1, 0.1, 0.4, 0.25, -0.2, 0.6), c(0.04, 0.04, 0.1, 0.1, 0.2, 0.3))

diag_cases <- list()
diag_methods <- c("FE", "DL", "REML", "ML", "PM")
if (section == "diagnostics") {  # the live test: fresh random sets only, fewer methods (fast)
  sets <- Filter(function(s) !(s$name %in% c("bcg", "hackshaw1998")), sets)
  diag_methods <- c("FE", "DL", "REML")
}
for (s in if (do_diag) sets else list()) {
  for (m in diag_methods) for (tt in tests) {
    res <- try(suppressWarnings(rma(s$yi, s$vi, method = m, test = tt, control = ctrl)), silent = TRUE)
    if (inherits(res, "try-error")) next
    case <- list(data = str_(s$name), method = str_(m), test = str_(tt))
    l1 <- try(suppressWarnings(leave1out(res)), silent = TRUE)
    if (!inherits(l1, "try-error"))
      case$leave1out <- obj(list(estimate = arr(l1$estimate), se = arr(l1$se),
                                 zval = arr(if (is.null(l1$zval)) l1$tval else l1$zval),
                                 pvalue = arr(l1$pval), ci_low = arr(l1$ci.lb), ci_high = arr(l1$ci.ub),
                                 q = arr(l1$Q), q_pvalue = arr(l1$Qp),
                                 tau2 = arr(if (is.null(l1$tau2)) rep(0, length(l1$Q)) else l1$tau2), i2 = arr(l1$I2),
                                 h2 = arr(l1$H2)))
    ord <- rev(seq_along(s$yi))
    cu <- try(suppressWarnings(cumul(res, order = ord)), silent = TRUE)
    if (!inherits(cu, "try-error"))
      case$cumul_rev <- obj(list(estimate = arr(cu$estimate), se = arr(cu$se), pvalue = arr(cu$pval),
                                 ci_low = arr(cu$ci.lb), ci_high = arr(cu$ci.ub), q = arr(cu$Q),
                                 tau2 = arr(if (is.null(cu$tau2)) rep(0, length(cu$Q)) else cu$tau2), i2 = arr(cu$I2), h2 = arr(cu$H2)))
    inf <- try(suppressWarnings(influence(res)), silent = TRUE)
    if (!inherits(inf, "try-error"))
      case$influence <- obj(list(rstudent = arr(inf$inf$rstudent), dffits = arr(inf$inf$dffits),
                                 cook_d = arr(inf$inf$cook.d), cov_r = arr(inf$inf$cov.r),
                                 tau2_del = arr(inf$inf$tau2.del), qe_del = arr(inf$inf$QE.del),
                                 hat = arr(inf$inf$hat), weight = arr(inf$inf$weight),
                                 dfbs = arr(inf$dfbs[[1]]), flagged = arr(as.numeric(inf$is.infl))))
    bj <- try(suppressWarnings(baujat(res)), silent = TRUE)
    if (!inherits(bj, "try-error") && !is.null(bj))
      case$baujat <- obj(list(x = arr(bj$x), y = arr(bj$y)))
    rt <- try(suppressWarnings(regtest(res)), silent = TRUE)
    if (!inherits(rt, "try-error"))
      case$regtest <- obj(list(statistic = num1(rt$zval), pvalue = num1(rt$pval), est = num1(rt$est),
                               ci_low = num1(rt$ci.lb), ci_high = num1(rt$ci.ub)))
    if (tt == "z") {
      rk <- try(suppressWarnings(ranktest(res)), silent = TRUE)
      if (!inherits(rk, "try-error"))
        case$ranktest <- obj(list(tau = num1(rk$tau), pvalue = num1(rk$pval)))
      for (est in c("L0", "R0")) for (sd in c("auto", "left", "right")) {
        tf <- try(suppressWarnings(if (sd == "auto") trimfill(res, estimator = est, control = ctrl)
                                   else trimfill(res, estimator = est, side = sd, control = ctrl)), silent = TRUE)
        if (inherits(tf, "try-error")) next
        nm <- paste0("trimfill_", est, "_", sd)
        case[[nm]] <- obj(list(k0 = num1(tf$k0), side = str_(tf$side), estimate = num1(tf$beta),
                               se = num1(tf$se), tau2 = num1(tf$tau2), ci_low = num1(tf$ci.lb),
                               ci_high = num1(tf$ci.ub), pvalue = num1(tf$pval), q = num1(tf$QE),
                               se_k0 = num1(tf$se.k0), yi = arr(tf$yi), vi = arr(tf$vi), fill = arr(as.numeric(tf$fill))))
      }
    }
    diag_cases[[length(diag_cases) + 1]] <- obj(case)
  }
}
fsn_cases <- lapply(if (do_diag) sets else list(), function(s) {
  f <- fsn(s$yi, s$vi)
  obj(list(data = str_(s$name), fsnum = num1(f$fsnum), pvalue = num1(f$pval)))
})
sets_json <- lapply(sets, function(s) obj(list(name = str_(s$name), yi = arr(s$yi), vi = arr(s$vi))))

# ------------------------------------------------------------------------------------------
# gosh (all subsets, small k)
# ------------------------------------------------------------------------------------------
gosh_cases <- list()
for (s in if (do_diag) sets else list()) {
  if (length(s$yi) > 8) next
  for (m in c("FE", "DL", "REML")) {
    res <- try(suppressWarnings(rma(s$yi, s$vi, method = m, control = ctrl)), silent = TRUE)
    if (inherits(res, "try-error")) next
    g <- suppressWarnings(gosh(res, progbar = FALSE))
    mask <- as.numeric(g$incl %*% 2^(seq_len(ncol(g$incl)) - 1))
    gosh_cases[[length(gosh_cases) + 1]] <- obj(list(data = str_(s$name), method = str_(m), mask = arr(mask),
      k = arr(g$res$k), qe = arr(g$res$QE), i2 = arr(g$res$I2), h2 = arr(g$res$H2), tau2 = arr(g$res$tau2),
      estimate = arr(g$res$estimate)))
  }
}

txt <- paste0("{", '"metafor_version":', str_(as.character(packageVersion("metafor"))), ",",
              '"seed":', seed, ",",
              '"regression_data":', lst_json(reg_data_json), ",",
              '"regression":', lst_json(reg_cases), ",",
              '"subgroup":', lst_json(sub_cases), ",",
              '"influence_regression":', lst_json(infreg_cases), ",",
              '"sets":', lst_json(sets_json), ",",
              '"diagnostics":', lst_json(diag_cases), ",",
              '"fsn":', lst_json(fsn_cases), ",",
              '"gosh":', lst_json(gosh_cases), "}")
writeLines(txt, out)
cat("wrote", out, "\n")
