# Reference values for lnsynth.effects and lnsynth.pairwise.mh from R metafor.
#
#   Rscript tests/reference/make_effects.R                  # -> tests/reference/effects_reference.json
#   Rscript tests/reference/make_effects.R --live IN.csv OUT.json
#
# The second form is used by the live test: IN.csv has columns
# analysis, ai, bi, ci, di; for every analysis it writes escalc (all binary
# measures, defaults) and rma.mh (OR/RR/RD) / rma.peto results.
# JSON is written by hand (jsonlite is not always installed): numbers use
# sprintf("%.17g"), NA/NaN -> null, +-Inf -> Infinity/-Infinity.

suppressMessages(library(metafor))

## ---------------------------------------------------------------- JSON writer
jnum <- function(x) {
  ifelse(is.na(x), "null",
         ifelse(is.infinite(x), ifelse(x > 0, "Infinity", "-Infinity"),
                sprintf("%.17g", as.numeric(x))))
}
tojson <- function(x) {
  if (is.null(x)) return("null")
  if (is.list(x)) {
    body <- vapply(x, tojson, "")
    if (!is.null(names(x))) {
      return(paste0("{", paste0("\"", names(x), "\":", body, collapse = ","), "}"))
    }
    return(paste0("[", paste(body, collapse = ","), "]"))
  }
  scalar <- length(x) == 1L && !inherits(x, "AsIs")
  if (is.character(x)) {
    s <- paste0("\"", gsub("\"", "\\\\\"", x), "\"")
  } else if (is.logical(x)) {
    s <- ifelse(is.na(x), "null", ifelse(x, "true", "false"))
  } else {
    s <- jnum(x)
  }
  if (scalar) s else paste0("[", paste(s, collapse = ","), "]")
}

## ---------------------------------------------------------------- fits
mh_result <- function(fit) {
  out <- list(estimate = fit$beta[1], se = fit$se, zval = fit$zval, pvalue = fit$pval,
              ci_low = fit$ci.lb, ci_high = fit$ci.ub, q = fit$QE, q_pvalue = fit$QEp,
              i2 = fit$I2, h2 = fit$H2, k = fit$k, k_yi = fit$k.yi, tau2 = fit$tau2)
  if (!is.null(fit$MH) && fit$measure %in% c("OR", "IRR")) {
    out$cmh <- fit$MH
    out$cmh_pvalue <- fit$MHp
  }
  if (fit$measure == "OR") {
    # Breslow-Day test and Tarone's corrected version (rma.mh, measure = "OR")
    out$bd <- fit$BD
    out$bd_pvalue <- fit$BDp
    out$tarone <- fit$TA
    out$tarone_pvalue <- fit$TAp
    out$bd_k <- fit$k.pos
  }
  out
}
try_fit <- function(expr) {
  r <- tryCatch(suppressWarnings(expr), error = function(e) e)
  if (inherits(r, "error")) return(list(error = conditionMessage(r)))
  mh_result(r)
}

binary_cases <- function(d, name) {
  # d: list(ai, bi, ci, di)
  out <- list()
  for (measure in c("RR", "OR", "RD", "PETO", "AS")) {
    for (to in c("only0", "all", "if0all", "none")) {
      for (drop00 in c(FALSE, TRUE)) {
        es <- suppressWarnings(escalc(measure, ai = d$ai, bi = d$bi, ci = d$ci, di = d$di,
                                      to = to, drop00 = drop00))
        out[[length(out) + 1]] <- list(
          name = name, measure = measure, add = NULL, to = to, drop00 = drop00, vtype = "LS",
          args = list(events_treat = I(d$ai), n_treat = I(d$ai + d$bi),
                      events_ctrl = I(d$ci), n_ctrl = I(d$ci + d$di)),
          yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
      }
    }
  }
  # explicit add values / vtypes
  for (measure in c("AS", "OR", "RR", "RD")) {
    for (add in c(0.5, 1, 0)) {
      es <- suppressWarnings(escalc(measure, ai = d$ai, bi = d$bi, ci = d$ci, di = d$di, add = add))
      out[[length(out) + 1]] <- list(
        name = name, measure = measure, add = add, to = "only0", drop00 = FALSE, vtype = "LS",
        args = list(events_treat = I(d$ai), n_treat = I(d$ai + d$bi),
                    events_ctrl = I(d$ci), n_ctrl = I(d$ci + d$di)),
        yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
    }
  }
  for (vt in c("UB", "AV")) {
    es <- suppressWarnings(escalc("RD", ai = d$ai, bi = d$bi, ci = d$ci, di = d$di, vtype = vt))
    out[[length(out) + 1]] <- list(
      name = name, measure = "RD", add = NULL, to = "only0", drop00 = FALSE, vtype = vt,
      args = list(events_treat = I(d$ai), n_treat = I(d$ai + d$bi),
                  events_ctrl = I(d$ci), n_ctrl = I(d$ci + d$di)),
      yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
  }
  out
}

pool_cases <- function(d, name, full = TRUE) {
  out <- list()
  settings <- list(list(to = "only0", drop00 = TRUE, add = 0.5))
  if (full) {
    settings <- c(settings, list(list(to = "only0", drop00 = FALSE, add = 0.5),
                                 list(to = "all", drop00 = TRUE, add = 0.5),
                                 list(to = "if0all", drop00 = FALSE, add = 0.5),
                                 list(to = "none", drop00 = TRUE, add = 0.5),
                                 list(to = "only0", drop00 = TRUE, add = 1)))
  }
  for (s in settings) {
    for (measure in c("OR", "RR", "RD")) {
      for (correct in c(TRUE, FALSE)) {
        if (measure != "OR" && !correct) next
        res <- try_fit(rma.mh(ai = d$ai, bi = d$bi, ci = d$ci, di = d$di, measure = measure,
                              correct = correct, add = s$add, to = s$to, drop00 = s$drop00))
        out[[length(out) + 1]] <- list(name = name, method = "MH", measure = measure, correct = correct,
                                       add = s$add, to = s$to, drop00 = s$drop00,
                                       ai = I(d$ai), bi = I(d$bi), ci = I(d$ci), di = I(d$di),
                                       result = res)
      }
    }
    res <- try_fit(rma.peto(ai = d$ai, bi = d$bi, ci = d$ci, di = d$di,
                            add = s$add, to = s$to, drop00 = s$drop00))
    out[[length(out) + 1]] <- list(name = name, method = "PETO", measure = "PETO", correct = TRUE,
                                   add = s$add, to = s$to, drop00 = s$drop00,
                                   ai = I(d$ai), bi = I(d$bi), ci = I(d$ci), di = I(d$di),
                                   result = res)
  }
  out
}

## ---------------------------------------------------------------- live mode
args <- commandArgs(trailingOnly = TRUE)
if (length(args) >= 1 && args[1] == "--live") {
  tab <- read.csv(args[2])
  res <- list()
  for (b in sort(unique(tab$analysis))) {
    s <- tab[tab$analysis == b, ]
    d <- list(ai = s$ai, bi = s$bi, ci = s$ci, di = s$di)
    esc <- list()
    for (measure in c("RR", "OR", "RD", "PETO", "AS")) {
      es <- suppressWarnings(escalc(measure, ai = d$ai, bi = d$bi, ci = d$ci, di = d$di))
      esc[[measure]] <- list(yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
    }
    res[[length(res) + 1]] <- list(analysis = b, escalc = esc, pool = pool_cases(d, paste0("live", b), full = FALSE))
  }
  writeLines(tojson(res), args[3])
  quit(status = 0)
}

## ---------------------------------------------------------------- reference file
set.seed(20240611)

rbin <- function(k, nlo, nhi) {
  n1 <- sample(nlo:nhi, k, replace = TRUE)
  n2 <- sample(nlo:nhi, k, replace = TRUE)
  p1 <- runif(k, 0.05, 0.6)
  p2 <- runif(k, 0.05, 0.6)
  ai <- rbinom(k, n1, p1)
  ci <- rbinom(k, n2, p2)
  list(ai = ai, bi = n1 - ai, ci = ci, di = n2 - ci)
}
with_cells <- function(d, i, ai, n1, ci, n2) {
  d$ai[i] <- ai; d$bi[i] <- n1 - ai; d$ci[i] <- ci; d$di[i] <- n2 - ci
  d
}

bin <- list()
bin$rand_moderate <- rbin(6, 20, 120)
bin$rand_small_zeros <- with_cells(with_cells(with_cells(rbin(7, 1, 15), 2, 0, 8, 0, 9), 4, 5, 5, 7, 7), 6, 0, 10, 3, 12)
bin$rand_zero_arm <- with_cells(with_cells(rbin(5, 3, 25), 1, 0, 12, 4, 13), 3, 11, 11, 6, 14)
bin$rand_ctrl_all_zero <- local({ d <- rbin(4, 5, 40); d$di <- d$di + d$ci; d$ci <- rep(0, 4); d })
bin$rand_tiny <- list(ai = c(0, 1, 1, 0), bi = c(1, 0, 1, 2), ci = c(1, 0, 0, 2), di = c(1, 1, 2, 0))
bin$bcg <- with(dat.bcg, list(ai = tpos, bi = tneg, ci = cpos, di = cneg))
bin$nielweise2007 <- with(dat.nielweise2007, list(ai = ai, bi = n1i - ai, ci = ci, di = n2i - ci))

escalc_cases <- list()
for (nm in names(bin)) escalc_cases <- c(escalc_cases, binary_cases(bin[[nm]], nm))

# continuous ---------------------------------------------------------------
rcont <- function(k) {
  n1 <- sample(2:30, k, TRUE); n2 <- sample(2:30, k, TRUE)
  list(mean_treat = round(rnorm(k, 10, 3), 2), sd_treat = round(runif(k, 0.5, 4), 2), n_treat = n1,
       mean_ctrl = round(rnorm(k, 9, 3), 2), sd_ctrl = round(runif(k, 0.5, 4), 2), n_ctrl = n2)
}
cont <- list(rand_cont1 = rcont(6), rand_cont2 = rcont(3),
             normand1999 = with(dat.normand1999, list(mean_treat = m1i, sd_treat = sd1i, n_treat = n1i,
                                                      mean_ctrl = m2i, sd_ctrl = sd2i, n_ctrl = n2i)))
cont$rand_cont2$n_treat[1] <- 2; cont$rand_cont2$n_ctrl[1] <- 2
vts <- list(MD = c("LS", "UB", "HO"), SMD = c("LS", "UB", "LS2", "AV"), ROM = c("LS", "HO", "AV", "AVHO"))
for (nm in names(cont)) {
  d <- cont[[nm]]
  for (measure in names(vts)) for (vt in vts[[measure]]) {
    es <- escalc(measure, m1i = d$mean_treat, sd1i = d$sd_treat, n1i = d$n_treat,
                 m2i = d$mean_ctrl, sd2i = d$sd_ctrl, n2i = d$n_ctrl, vtype = vt)
    escalc_cases[[length(escalc_cases) + 1]] <- list(
      name = nm, measure = measure, add = NULL, to = "only0", drop00 = FALSE, vtype = vt,
      args = lapply(d, I), yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
  }
}

# proportions ----------------------------------------------------------------
rprop <- function(k) { n <- sample(1:40, k, TRUE); list(events = rbinom(k, n, runif(k, 0.05, 0.9)), n = n) }
prop <- list(rand_prop = rprop(8), pritz1997 = with(dat.pritz1997, list(events = xi, n = ni)))
prop$rand_prop$events[2] <- 0
prop$rand_prop$events[5] <- prop$rand_prop$n[5]
prop$rand_prop$n[7] <- 1; prop$rand_prop$events[7] <- 1
pvts <- list(PR = c("LS", "UB", "AV"), PLO = c("LS", "AV"), PAS = "LS", PFT = "LS")
for (nm in names(prop)) {
  d <- prop[[nm]]
  for (measure in names(pvts)) for (vt in pvts[[measure]]) for (to in c("only0", "all", "if0all", "none")) {
    es <- suppressWarnings(escalc(measure, xi = d$events, ni = d$n, vtype = vt, to = to))
    escalc_cases[[length(escalc_cases) + 1]] <- list(
      name = nm, measure = measure, add = NULL, to = to, drop00 = FALSE, vtype = vt,
      args = lapply(d, I), yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
  }
  for (measure in c("PAS", "PFT", "PR")) {
    es <- suppressWarnings(escalc(measure, xi = d$events, ni = d$n, add = 0.5))
    escalc_cases[[length(escalc_cases) + 1]] <- list(
      name = nm, measure = measure, add = 0.5, to = "only0", drop00 = FALSE, vtype = "LS",
      args = lapply(d, I), yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
  }
}

# rates ------------------------------------------------------------------------
rrate <- function(k) {
  t1 <- round(runif(k, 5, 400), 1); t2 <- round(runif(k, 5, 400), 1)
  list(events_treat = rpois(k, t1 * 0.02), time_treat = t1, events_ctrl = rpois(k, t2 * 0.03), time_ctrl = t2)
}
rate <- list(rand_rate = rrate(7),
             hart1999 = with(dat.hart1999, list(events_treat = x1i, time_treat = t1i,
                                                events_ctrl = x2i, time_ctrl = t2i)))
rate$rand_rate$events_treat[c(2, 3)] <- 0
rate$rand_rate$events_ctrl[c(3, 5)] <- 0
for (nm in names(rate)) {
  d <- rate[[nm]]
  for (to in c("only0", "all", "if0all", "none")) {
    for (drop00 in c(FALSE, TRUE)) {
      es <- suppressWarnings(escalc("IRR", x1i = d$events_treat, t1i = d$time_treat,
                                    x2i = d$events_ctrl, t2i = d$time_ctrl, to = to, drop00 = drop00))
      escalc_cases[[length(escalc_cases) + 1]] <- list(
        name = nm, measure = "IRR", add = NULL, to = to, drop00 = drop00, vtype = "LS",
        args = lapply(d, I), yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
    }
    es <- suppressWarnings(escalc("IR", xi = d$events_treat, ti = d$time_treat, to = to))
    escalc_cases[[length(escalc_cases) + 1]] <- list(
      name = nm, measure = "IR", add = NULL, to = to, drop00 = FALSE, vtype = "LS",
      args = list(events = I(d$events_treat), time = I(d$time_treat)),
      yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
  }
}

# pooling ------------------------------------------------------------------------
pool <- bin
pool$k1 <- list(ai = 3, bi = 17, ci = 7, di = 14)
pool$k1_zero <- list(ai = 0, bi = 20, ci = 4, di = 16)
pool$k2 <- list(ai = c(12, 5), bi = c(38, 45), ci = c(20, 9), di = c(31, 40))
pool$k2_double_zero <- list(ai = c(0, 6), bi = c(30, 24), ci = c(0, 11), di = c(28, 19))
pool$yusuf_table6 <- with(subset(dat.yusuf1985, table == "6"), list(ai = ai, bi = n1i - ai, ci = ci, di = n2i - ci))
pool$with_missing <- list(ai = c(4, NA, 9, 0), bi = c(30, NA, 41, 25), ci = c(8, NA, 12, 3), di = c(27, NA, 38, 22))
pool$no_treat_events <- list(ai = c(0, 0, 0), bi = c(10, 15, 12), ci = c(2, 0, 4), di = c(9, 14, 10))
pool$all_double_zero <- list(ai = c(0, 0), bi = c(10, 15), ci = c(0, 0), di = c(9, 14))
pool_res <- list()
for (nm in names(pool)) pool_res <- c(pool_res, pool_cases(pool[[nm]], nm, full = !(nm %in% c("bcg"))))

# correlations ---------------------------------------------------------------------
rcor <- function(k) list(cor = round(runif(k, -0.9, 0.95), 3), n = sample(4:200, k, TRUE))
corr <- list(rand_cor = rcor(8), molloy2014 = with(dat.molloy2014, list(cor = ri, n = ni)))
corr$rand_cor$n[3] <- 3  # vi undefined (NA in escalc) for n <= 3
corr$rand_cor$cor[5] <- 0
for (nm in names(corr)) {
  d <- corr[[nm]]
  for (measure in c("COR", "ZCOR")) {
    for (vt in if (measure == "COR") c("LS", "AV") else "LS") {
      es <- suppressWarnings(escalc(measure, ri = d$cor, ni = d$n, vtype = vt))
      escalc_cases[[length(escalc_cases) + 1]] <- list(
        name = nm, measure = measure, add = NULL, to = "only0", drop00 = FALSE, vtype = vt,
        args = lapply(d, I), yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
    }
  }
}

# change scores (single group, two occasions) --------------------------------------
rchg <- function(k) list(mean_time1 = round(rnorm(k, 12, 3), 2), mean_time2 = round(rnorm(k, 10, 3), 2),
                         sd_time1 = round(runif(k, 1, 5), 2), sd_time2 = round(runif(k, 1, 5), 2),
                         n = sample(3:60, k, TRUE), cor = round(runif(k, -0.2, 0.9), 2))
chg <- list(rand_chg1 = rchg(7), rand_chg2 = rchg(3))
chg$rand_chg2$n[1] <- 3
chg$rand_chg3 <- rchg(12)
chg$rand_chg3$cor[4] <- 0
for (nm in names(chg)) {
  d <- chg[[nm]]
  for (vt in c("LS", "LS2")) {
    es <- escalc("SMCC", m1i = d$mean_time1, m2i = d$mean_time2, sd1i = d$sd_time1, sd2i = d$sd_time2,
                 ni = d$n, ri = d$cor, vtype = vt)
    escalc_cases[[length(escalc_cases) + 1]] <- list(
      name = nm, measure = "SMCC", add = NULL, to = "only0", drop00 = FALSE, vtype = vt,
      args = lapply(d, I), yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
    es <- escalc("SMCR", m1i = d$mean_time1, m2i = d$mean_time2, sd1i = d$sd_time1,
                 ni = d$n, ri = d$cor, vtype = vt)
    escalc_cases[[length(escalc_cases) + 1]] <- list(
      name = nm, measure = "SMCR", add = NULL, to = "only0", drop00 = FALSE, vtype = vt,
      args = lapply(d[c("mean_time1", "mean_time2", "sd_time1", "n", "cor")], I),
      yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
  }
}

# incidence rate difference and log incidence rate ---------------------------------------
for (nm in names(rate)) {
  d <- rate[[nm]]
  for (to in c("only0", "all", "if0all", "none")) {
    for (drop00 in c(FALSE, TRUE)) {
      es <- suppressWarnings(escalc("IRD", x1i = d$events_treat, t1i = d$time_treat,
                                    x2i = d$events_ctrl, t2i = d$time_ctrl, to = to, drop00 = drop00))
      escalc_cases[[length(escalc_cases) + 1]] <- list(
        name = nm, measure = "IRD", add = NULL, to = to, drop00 = drop00, vtype = "LS",
        args = lapply(d, I), yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
    }
    es <- suppressWarnings(escalc("IRLN", xi = d$events_treat, ti = d$time_treat, to = to))
    escalc_cases[[length(escalc_cases) + 1]] <- list(
      name = nm, measure = "IRLN", add = NULL, to = to, drop00 = FALSE, vtype = "LS",
      args = list(events = I(d$events_treat), time = I(d$time_treat)),
      yi = I(as.numeric(es$yi)), vi = I(as.numeric(es$vi)))
  }
}

# Mantel-Haenszel for incidence rates (rma.mh measure = "IRR" / "IRD") -----------------
rate_pool <- rate
rate_pool$k1 <- list(events_treat = 4, time_treat = 120.5, events_ctrl = 9, time_ctrl = 98)
rate_pool$one_zero_arm <- list(events_treat = c(0, 3, 7), time_treat = c(50, 80, 120),
                               events_ctrl = c(2, 5, 6), time_ctrl = c(45, 90, 100))
rate_pool$with_missing <- list(events_treat = c(3, NA, 8, 1), time_treat = c(40, NA, 150, 30),
                               events_ctrl = c(5, NA, 11, 0), time_ctrl = c(42, NA, 160, 35))
pool_rate_res <- list()
for (nm in names(rate_pool)) {
  d <- rate_pool[[nm]]
  for (s in list(list(to = "only0", drop00 = TRUE, add = 0.5), list(to = "all", drop00 = FALSE, add = 0.5),
                 list(to = "none", drop00 = FALSE, add = 0.5))) {
    for (measure in c("IRR", "IRD")) {
      for (correct in c(TRUE, FALSE)) {
        if (measure == "IRD" && !correct) next
        res <- try_fit(rma.mh(x1i = d$events_treat, t1i = d$time_treat, x2i = d$events_ctrl, t2i = d$time_ctrl,
                              measure = measure, correct = correct, add = s$add, to = s$to, drop00 = s$drop00))
        pool_rate_res[[length(pool_rate_res) + 1]] <- list(
          name = nm, method = "MH", measure = measure, correct = correct, add = s$add, to = s$to,
          drop00 = s$drop00, x1i = I(d$events_treat), t1i = I(d$time_treat), x2i = I(d$events_ctrl),
          t2i = I(d$time_ctrl), result = res)
      }
    }
  }
}

out <- list(metafor_version = as.character(packageVersion("metafor")),
            R_version = paste(R.version$major, R.version$minor, sep = "."),
            seed = 20240611, escalc = escalc_cases, pool = pool_res, pool_rate = pool_rate_res)
args_out <- if (length(args) >= 1) args[1] else file.path("tests", "reference", "effects_reference.json")
writeLines(tojson(out), args_out)
cat("wrote", args_out, ":", length(escalc_cases), "escalc cases,", length(pool_res), "pooling cases\n")
