#!/usr/bin/env Rscript
# Reference values for lnsynth.pairwise.firth (Firth-penalised logistic meta-analysis) computed in R
# by an independent route: R's logistf is not installable here (no Debian package), so the Firth fit
# is obtained with glm() by the pseudo-data fixed point of Firth (1993) / Heinze & Schemper (2002):
# refit glm(cbind(y + h/2, n - y + h/2) ~ study + treat) with h the diagonal of the hat matrix
# W^{1/2} X (X'WX)^{-1} X' W^{1/2}, W = n p (1 - p) from the ORIGINAL n, until the coefficients change
# by < 1e-13.  At the fixed point the penalised score X'(y - n p + h (1/2 - p)) is 0.  The penalised
# likelihood-ratio statistic for beta = 0 uses the same fixed point with offset(0 * treat) and the
# full model's hat matrix (logistf's convention).  Plain ML comes from glm() itself (epsilon 1e-14).
#
# Usage: Rscript tests/reference/make_firth.R [out.json]
suppressPackageStartupMessages(library(jsonlite))
options(warn = -1)  # glm warns about the non-integer pseudo-counts y + h/2, which is intended
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/firth_reference.json"

long <- function(a, b, c, d) {
  k <- length(a)
  data.frame(y = c(a, c), n = c(a + b, c + d), study = factor(rep(seq_len(k), 2)),
             treat = rep(c(1, 0), each = k))
}
penal <- function(dat, X, beta0 = NULL) {
  h <- rep(0, nrow(dat))
  old <- NULL
  for (it in 1:500) {
    dat$yy <- dat$y + h / 2
    dat$nn <- dat$n + h
    fit <- if (is.null(beta0)) {
      if (nlevels(dat$study) > 1) glm(cbind(yy, nn - yy) ~ study + treat, binomial, dat,
                                      control = glm.control(epsilon = 1e-15, maxit = 100))
      else glm(cbind(yy, nn - yy) ~ treat, binomial, dat, control = glm.control(epsilon = 1e-15, maxit = 100))
    } else {
      off <- beta0 * dat$treat
      if (nlevels(dat$study) > 1) glm(cbind(yy, nn - yy) ~ study + offset(off), binomial, dat,
                                      control = glm.control(epsilon = 1e-15, maxit = 100))
      else glm(cbind(yy, nn - yy) ~ 1 + offset(off), binomial, dat, control = glm.control(epsilon = 1e-15, maxit = 100))
    }
    p <- fitted(fit)
    w <- dat$n * p * (1 - p)
    info <- crossprod(X * sqrt(w))
    h <- w * rowSums((X %*% solve(info)) * X)
    if (!is.null(old) && max(abs(coef(fit) - old)) < 1e-13) break
    old <- coef(fit)
  }
  ll <- sum(dat$y * log(p) + (dat$n - dat$y) * log(1 - p)) + 0.5 * as.numeric(determinant(info)$modulus)
  list(coef = coef(fit), info = info, pll = ll, p = p, h = h)
}
cases <- list(
  list(name = "sparse_zero_cells", ai = c(0, 1, 2, 0), bi = c(50, 49, 58, 30), ci = c(3, 4, 5, 0), di = c(47, 46, 55, 30)),
  list(name = "single_table", ai = c(0), bi = c(20), ci = c(3), di = c(17)),
  list(name = "moderate", ai = c(5, 10, 20, 3, 7), bi = c(95, 90, 80, 47, 60), ci = c(8, 12, 30, 6, 9), di = c(92, 88, 70, 44, 61)),
  list(name = "all_treat_zero", ai = c(0, 0, 0), bi = c(40, 60, 25), ci = c(2, 5, 1), di = c(38, 55, 24))
)
res <- list()
for (cs in cases) {
  dat <- long(cs$ai, cs$bi, cs$ci, cs$di)
  X <- if (nlevels(dat$study) > 1) model.matrix(~ study + treat, dat) else model.matrix(~ treat, dat)
  f <- penal(dat, X)
  r0 <- penal(dat, X, beta0 = 0)
  vc <- solve(f$info)
  entry <- list(name = cs$name, ai = cs$ai, bi = cs$bi, ci = cs$ci, di = cs$di,
                firth_estimate = unname(f$coef["treat"]), firth_se = sqrt(vc[ncol(X), ncol(X)]),
                firth_pl_chisq = 2 * (f$pll - r0$pll))
  if (all(cs$ai > 0) && all(cs$ci > 0) && all(cs$bi > 0) && all(cs$di > 0)) {
    g <- if (nlevels(dat$study) > 1) glm(cbind(y, n - y) ~ study + treat, binomial, dat,
                                         control = glm.control(epsilon = 1e-15, maxit = 100))
         else glm(cbind(y, n - y) ~ treat, binomial, dat, control = glm.control(epsilon = 1e-15, maxit = 100))
    entry$ml_estimate <- unname(coef(g)["treat"])
    entry$ml_se <- unname(sqrt(diag(vcov(g)))["treat"])
  }
  res[[length(res) + 1]] <- entry
}
writeLines(toJSON(list(generator = "tests/reference/make_firth.R", R = R.version.string, cases = res),
                  digits = NA, auto_unbox = TRUE, pretty = TRUE), out)
