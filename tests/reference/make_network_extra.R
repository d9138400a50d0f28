# Reference values from metafor for lnsynth.network.regression (network meta-regression; rma.mv) and
# for node-splitting by back-calculation (rma.mv + rma), plus the Stowe et al. (2010) arm data
# (metadat::dat.stowe2010) used by the published-values test.
#
# Usage (from the repository root):
#   Rscript tests/reference/make_network_extra.R tests/reference/network_extra_reference.json
#
# Model: the contrast-based consistency NMA of make_network.R (contrasts against each study's baseline
# arm -- the network reference if present, else the first treatment in C-locale order; shared-arm
# covariance in V; random = ~ comp | study, rho = 1/2) with one study-level covariate x:
#   common:      mods = cbind(X, x * rowSums(X))   (one interaction for all treatments vs reference)
#   independent: mods = cbind(X, x * X)            (one interaction per non-reference treatment)
# REML/ML with optimizer BFGS and reltol 1e-15 (the tau^2 profile is flat near the optimum, so tau^2
# agrees to ~1e-7 relative while logLik agrees to ~1e-13), FE = method "FE".
# The covariates are SYNTHETIC (a deterministic function of the study's position), chosen only to
# exercise the algebra; they carry no clinical meaning.

suppressMessages({library(metafor); library(metadat); library(Matrix)})
args <- commandArgs(trailingOnly = TRUE)
out_path <- if (length(args)) args[1] else "tests/reference/network_extra_reference.json"

to_json <- function(x, indent = 0) {
  pad <- strrep(" ", indent); pad2 <- strrep(" ", indent + 1)
  num <- function(v) ifelse(is.na(v), "null", sprintf("%.17g", v))
  str <- function(v) paste0('"', gsub('"', '\\\\"', v), '"')
  if (is.null(x)) return("null")
  if (is.list(x)) {
    if (!is.null(names(x))) {
      items <- vapply(names(x), function(k) paste0(pad2, str(k), ": ", to_json(x[[k]], indent + 1)), "")
      return(paste0("{\n", paste(items, collapse = ",\n"), "\n", pad, "}"))
    }
    items <- vapply(x, function(e) paste0(pad2, to_json(e, indent + 1)), "")
    return(paste0("[\n", paste(items, collapse = ",\n"), "\n", pad, "]"))
  }
  if (length(x) == 0) return("[]")
  vals <- if (is.logical(x)) ifelse(x, "true", "false") else if (is.numeric(x)) num(x) else str(as.character(x))
  if (!is.null(attr(x, "scalar")) && length(x) == 1) return(vals)
  paste0("[", paste(vals, collapse = ", "), "]")
}
scalar <- function(x) { attr(x, "scalar") <- TRUE; x }
csort <- function(x) sort(x, method = "radix")

arm_stats <- function(measure, x, n, m, s) {
  if (measure == "OR") {
    if (any(x == 0 | x == n)) { x <- x + 0.5; n <- n + 1 }
    return(list(th = log(x / (n - x)), v = 1 / x + 1 / (n - x)))
  }
  list(th = m, v = s^2 / n)
}

build <- function(arms, measure, reference) {
  ys <- c(); t1 <- c(); t2 <- c(); st <- c(); blocks <- list()
  for (sid in unique(arms$study)) {
    a <- arms[arms$study == sid, ]
    base <- if (reference %in% a$trt) reference else csort(a$trt)[1]
    ord <- c(base, csort(setdiff(a$trt, base)))
    a <- a[match(ord, a$trt), ]
    as <- arm_stats(measure, a$x, a$n, a$m, a$s)
    y <- as$th[-1] - as$th[1]
    V <- matrix(as$v[1], length(y), length(y)); diag(V) <- as$v[-1] + as$v[1]
    ys <- c(ys, y); t1 <- c(t1, rep(base, length(y))); t2 <- c(t2, ord[-1]); st <- c(st, rep(sid, length(y)))
    blocks[[length(blocks) + 1]] <- V
  }
  list(yi = ys, base = t1, trt = t2, study = st, V = as.matrix(bdiag(blocks)))
}

design_X <- function(cd, params) {
  X <- matrix(0, length(cd$yi), length(params), dimnames = list(NULL, params))
  for (i in seq_along(cd$yi)) {
    if (cd$trt[i] %in% params) X[i, cd$trt[i]] <- X[i, cd$trt[i]] + 1
    if (cd$base[i] %in% params) X[i, cd$base[i]] <- X[i, cd$base[i]] - 1
  }
  X
}

fit_reg <- function(cd, cov_by_study, reference, method, assumption) {
  trts <- csort(unique(c(cd$base, cd$trt)))
  params <- setdiff(trts, reference)
  X <- design_X(cd, params)
  x <- cov_by_study[cd$study]
  Z <- if (assumption == "common") cbind(beta = x * rowSums(X)) else { z <- x * X; colnames(z) <- paste0("beta:", params); z }
  M <- cbind(X, Z)
  comp <- paste(cd$base, cd$trt, sep = "-"); study <- cd$study
  if (method == "FE") {
    res <- rma.mv(cd$yi, cd$V, mods = M, intercept = FALSE, method = "FE")
  } else {
    fitr <- function(ctl) rma.mv(cd$yi, cd$V, mods = M, intercept = FALSE, random = ~ comp | study,
                                 rho = 1/2, struct = "CS", method = method, control = ctl)
    res <- tryCatch(fitr(list(optimizer = "BFGS", reltol = 1e-15, maxit = 1000)),
                    error = function(e) fitr(list(optimizer = "nlminb")))
  }
  list(method = scalar(method), assumption = scalar(assumption), coef_names = colnames(M),
       estimate = unname(as.vector(coef(res))), se = unname(res$se),
       tau2 = scalar(if (method == "FE") 0 else res$tau2), loglik = scalar(as.numeric(logLik(res))),
       QE = scalar(res$QE), QE_df = scalar(res$k - res$p),
       vcov = lapply(seq_len(nrow(vcov(res))), function(i) unname(vcov(res)[i, ])))
}

## Node-splitting by back-calculation (Dias 2010; Koenig, Krahn & Binder 2013), built from metafor fits:
## NMA estimate and SE of each comparison from rma.mv (consistency model, REML tau^2 or FE); direct
## estimate from rma(..., method = "FE") (FE) or rma(..., tau2 = <network tau^2>) (RE) on the pairwise
## contrasts of all studies containing both treatments (multi-arm studies contribute their pairwise
## contrast with its own variance, as netmeta); P = Var(nma) / Var(direct);
## indirect = (nma - P direct) / (1 - P), Var(indirect) = Var(nma) / (1 - P).
backcalc_ref <- function(arms, cd, measure, reference, method) {
  trts <- csort(unique(c(cd$base, cd$trt)))
  params <- setdiff(trts, reference)
  X <- design_X(cd, params)
  comp <- paste(cd$base, cd$trt, sep = "-"); study <- cd$study
  if (method == "FE") {
    res <- rma.mv(cd$yi, cd$V, mods = X, intercept = FALSE, method = "FE"); tau2 <- 0
  } else {
    res <- rma.mv(cd$yi, cd$V, mods = X, intercept = FALSE, random = ~ comp | study, rho = 1/2, struct = "CS",
                  method = "REML", control = list(optimizer = "BFGS", reltol = 1e-15, maxit = 1000))
    tau2 <- res$tau2
  }
  b <- setNames(c(0, as.vector(coef(res))), c(reference, params))
  S <- matrix(0, length(trts), length(trts), dimnames = list(c(reference, params), c(reference, params)))
  S[params, params] <- vcov(res)
  # arm statistics per study (same zero-cell rule as build())
  arm <- list()
  for (sid in unique(arms$study)) {
    a <- arms[arms$study == sid, ]
    as <- arm_stats(measure, a$x, a$n, a$m, a$s)
    arm[[sid]] <- list(trt = a$trt, th = as$th, v = as$v)
  }
  out <- list()
  for (i in seq_along(trts)) for (j in seq_along(trts)) {
    if (j <= i) next
    cmp <- trts[i]; trt <- trts[j]
    if (trt == reference) { cmp <- trts[j]; trt <- trts[i] }
    yi <- c(); vi <- c()
    for (sid in names(arm)) {
      A <- arm[[sid]]
      if (cmp %in% A$trt && trt %in% A$trt) {
        yi <- c(yi, A$th[A$trt == trt] - A$th[A$trt == cmp]); vi <- c(vi, A$v[A$trt == trt] + A$v[A$trt == cmp])
      }
    }
    nma <- unname(b[trt] - b[cmp])
    nma_se <- sqrt(S[trt, trt] + S[cmp, cmp] - 2 * S[trt, cmp])
    if (!length(yi)) {
      out[[length(out) + 1]] <- list(treat1 = scalar(trt), treat2 = scalar(cmp), n_direct = scalar(0),
                                     prop_direct = scalar(0), nma = scalar(nma), nma_se = scalar(nma_se))
      next
    }
    d <- if (tau2 == 0) rma(yi, vi, method = "FE") else rma(yi, vi, tau2 = tau2)
    P <- nma_se^2 / d$se^2
    ind <- if (P < 1 - 5e-4) (nma - P * as.numeric(coef(d))) / (1 - P) else NA_real_
    ind_se <- if (P < 1 - 5e-4) nma_se / sqrt(1 - P) else NA_real_
    out[[length(out) + 1]] <- list(treat1 = scalar(trt), treat2 = scalar(cmp), n_direct = scalar(length(yi)),
                                   prop_direct = scalar(P), direct = scalar(as.numeric(coef(d))),
                                   direct_se = scalar(d$se), nma = scalar(nma), nma_se = scalar(nma_se),
                                   indirect = scalar(ind), indirect_se = scalar(ind_se))
  }
  list(tau2 = scalar(tau2), rows = out)
}

cases <- list()
add_case <- function(name, arms, measure, reference, cov_by_study) {
  cd <- build(arms, measure, reference)
  fits <- list()
  for (meth in c("FE", "ML", "REML")) for (ass in c("common", "independent"))
    fits[[paste(meth, ass, sep = "_")]] <- fit_reg(cd, cov_by_study, reference, meth, ass)
  bc <- list(FE = backcalc_ref(arms, cd, measure, reference, "FE"),
             REML = backcalc_ref(arms, cd, measure, reference, "REML"))
  arms$covariate <- unname(cov_by_study[as.character(arms$study)])
  cases[[length(cases) + 1]] <<- list(name = scalar(name), measure = scalar(measure), reference = scalar(reference),
                                      arms = as.list(arms), fits = fits, back_calculation = bc)
}

## Stowe et al. (2010): mean off-time reduction (MD), 28 two-arm studies and the three-arm LARGO trial
d <- dat.stowe2010
sa <- rbind(data.frame(study = d$study, trt = d$t1, m = d$y1, s = d$sd1, n = d$n1),
            data.frame(study = d$study, trt = d$t2, m = d$y2, s = d$sd2, n = d$n2),
            data.frame(study = d$study, trt = d$t3, m = d$y3, s = d$sd3, n = d$n3))
sa <- sa[!is.na(sa$m), ]
sa <- sa[order(match(sa$study, d$study)), ]

st <- unique(sa$study)
cv <- setNames(round(10 + 3 * sin(seq_along(st)), 3), st)   # synthetic covariate
add_case("stowe2010", sa, "MD", "Placebo", cv)

## Hasselblad (1998) smoking cessation (OR, two three-arm studies), synthetic covariate
h <- dat.hasselblad1998
ha <- data.frame(study = as.character(h$study), trt = h$trt, x = h$xi, n = h$ni)
st <- unique(ha$study)
cv <- setNames(round(2 * cos(1.7 * seq_along(st)), 3), st)
add_case("hasselblad1998", ha, "OR", "no_contact", cv)

ref <- list(metafor_version = scalar(as.character(packageVersion("metafor"))),
            R_version = scalar(R.version.string), cases = cases)
writeLines(to_json(ref), out_path)
cat("wrote", out_path, "with", length(cases), "cases\n")
