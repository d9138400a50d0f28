# Reference values for lnsynth.network from metafor::rma.mv.
#
# Usage (from the repository root):
#   Rscript tests/reference/make_network.R tests/reference/network_reference.json
# (REML: optimizer BFGS with reltol 1e-15; the profile is flat near the optimum,
# so metafor's tau^2 is accurate to ~1e-7 relative while logLik agrees to ~1e-14.)
#
# Model: contrast-based consistency NMA. Each study's contrasts are against its
# baseline arm (the network reference if the study has it, else the first of
# its treatments in C-locale sorted order), with shared-control covariance on
# the off-diagonals of V, fitted as
#   rma.mv(yi, V, mods = X, intercept = FALSE, random = ~ comp | study, rho = 1/2)
# (comp = "baseline-treatment" label), FE = same model without random effects.
# Zero cells: 0.5 added to events and non-events of all arms of a study with any
# arm having 0 events or all events; studies with all arms 0 or all arms full
# are dropped (OR). The arm data are written to the JSON so the Python tests use
# exactly the same input.
#
# Also written: ML fits (rma.mv method = "ML"); for REML and ML fits test = "t" intervals,
# prediction intervals from predict() (test "z" and "t") and Hartung-Knapp intervals
# computed from metafor's fit; generalised DL (method of moments) and Paule-Mandel tau^2 by
# dense matrix algebra / uniroot (metafor has no rma.mv DL/PM), the full design-by-treatment
# model's DL tau^2 and the random-effects between-designs Q with it; and BCG as a
# two-treatment network checked against rma() for DL, PM, REML, ML and test = "knha".
# Also written: Q decomposition by design (Krahn et al. 2013) computed via the
# design-by-treatment interaction model (QE of that model = Q within designs),
# under FE and with the consistency-model REML tau^2 plugged in; node-splitting
# (SIDE by exclusion) for one data set.

suppressMessages(library(metafor))
args <- commandArgs(trailingOnly = TRUE)
out_path <- if (length(args)) args[1] else "tests/reference/network_reference.json"

## ---------------------------------------------------------------- JSON writer
to_json <- function(x, indent = 0) {
  pad <- strrep(" ", indent)
  pad2 <- strrep(" ", indent + 1)
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
  if (is.logical(x)) vals <- ifelse(x, "true", "false")
  else if (is.numeric(x)) vals <- num(x)
  else vals <- str(as.character(x))
  if (!is.null(attr(x, "scalar")) && length(x) == 1) return(vals)
  paste0("[", paste(vals, collapse = ", "), "]")
}
scalar <- function(x) { attr(x, "scalar") <- TRUE; x }

csort <- function(x) sort(x, method = "radix")

## ------------------------------------------------- arm data -> contrasts + V
arm_stats <- function(measure, x = NULL, n, m = NULL, s = NULL) {
  if (measure %in% c("OR", "RR", "RD")) {
    if (any(x == 0 | x == n)) { x <- x + 0.5; n <- n + 1 }
    p <- x / n
    if (measure == "OR") return(list(th = log(x / (n - x)), v = 1 / x + 1 / (n - x)))
    if (measure == "RR") return(list(th = log(p), v = 1 / x - 1 / n))
    return(list(th = p, v = p * (1 - p) / n))
  }
  list(th = m, v = s^2 / n)
}

build <- function(arms, measure, reference) {
  # arms: data.frame study, trt, (x, n) or (m, s, n)
  ys <- c(); t1 <- c(); t2 <- c(); st <- c(); blocks <- list(); dropped <- c()
  for (sid in unique(arms$study)) {
    a <- arms[arms$study == sid, ]
    if (measure == "OR" && (all(a$x == 0) || all(a$x == a$n))) { dropped <- c(dropped, sid); next }
    base <- if (reference %in% a$trt) reference else csort(a$trt)[1]
    ord <- c(base, csort(setdiff(a$trt, base)))
    a <- a[match(ord, a$trt), ]
    if (measure == "SMD") {
      N <- sum(a$n); k <- nrow(a); dfree <- N - k
      sp <- sqrt(sum((a$n - 1) * a$s^2) / dfree)
      J <- exp(lgamma(dfree / 2) - log(sqrt(dfree / 2)) - lgamma((dfree - 1) / 2))
      y <- J * (a$m[-1] - a$m[1]) / sp
      V <- 1 / a$n[1] + outer(y, y) / (2 * N)
      diag(V) <- diag(V) + 1 / a$n[-1]
    } else {
      as <- arm_stats(measure, a$x, a$n, a$m, a$s)
      y <- as$th[-1] - as$th[1]
      V <- matrix(as$v[1], length(y), length(y))
      diag(V) <- as$v[-1] + as$v[1]
    }
    ys <- c(ys, y); t1 <- c(t1, rep(base, length(y))); t2 <- c(t2, ord[-1]); st <- c(st, rep(sid, length(y)))
    blocks[[length(blocks) + 1]] <- V
  }
  list(yi = ys, base = t1, trt = t2, study = st, V = as.matrix(bdiag(blocks)), dropped = dropped)
}

design_X <- function(cd, params) {
  X <- matrix(0, length(cd$yi), length(params), dimnames = list(NULL, params))
  for (i in seq_along(cd$yi)) {
    if (cd$trt[i] %in% params) X[i, cd$trt[i]] <- X[i, cd$trt[i]] + 1
    if (cd$base[i] %in% params) X[i, cd$base[i]] <- X[i, cd$base[i]] - 1
  }
  X
}

re_struct <- function(cd) {
  # B: block diagonal (I + J)/2 per study (unit variance, correlation 1/2)
  B <- outer(cd$study, cd$study, "==") * 0.5
  diag(B) <- 1
  B
}

## design-by-treatment interaction model: separate parameters per design
inc_X <- function(cd) {
  des <- tapply(c(cd$base, cd$trt), c(cd$study, cd$study), function(v) paste(csort(unique(v)), collapse = ":"))
  d <- des[cd$study]
  cols <- list()
  for (dd in unique(d)) {
    trts <- strsplit(dd, ":")[[1]]
    for (t in trts[-1]) cols[[length(cols) + 1]] <- c(dd, t)
  }
  X <- matrix(0, length(cd$yi), length(cols))
  for (j in seq_along(cols)) {
    dd <- cols[[j]][1]; t <- cols[[j]][2]
    X[d == dd & cd$trt == t, j] <- X[d == dd & cd$trt == t, j] + 1
    X[d == dd & cd$base == t, j] <- X[d == dd & cd$base == t, j] - 1
  }
  list(X = X, design = d)
}

fit_one <- function(cd, reference, method) {
  trts <- csort(unique(c(cd$base, cd$trt)))
  params <- setdiff(trts, reference)
  X <- design_X(cd, params)
  comp <- paste(cd$base, cd$trt, sep = "-")
  study <- cd$study
  if (method == "FE") {
    res <- rma.mv(cd$yi, cd$V, mods = X, intercept = FALSE, method = "FE")
    tau2 <- 0
  } else {
    fitr <- function(ctl) rma.mv(cd$yi, cd$V, mods = X, intercept = FALSE, random = ~ comp | study,
                                 rho = 1/2, struct = "CS", method = method, control = ctl)
    # BFGS with a tight tolerance; if it stops without convergence (tau^2 at the
    # boundary drives log(tau^2) towards -Inf), fall back to nlminb's defaults
    res <- tryCatch(fitr(list(optimizer = "BFGS", reltol = 1e-15, maxit = 1000)),
                    error = function(e) fitr(list(optimizer = "nlminb")))
    tau2 <- res$tau2
    # convergence check: the REML logLik at the estimate is not below that at
    # nearby fixed tau^2 values (and at tau^2 = 0)
    llf <- function(t) as.numeric(logLik(rma.mv(cd$yi, cd$V, mods = X, intercept = FALSE,
      random = ~ comp | study, rho = 1/2, struct = "CS", method = method, tau2 = t)))
    ll0 <- as.numeric(logLik(res))
    # (tolerance 1e-7: near the boundary the log-scale optimiser stops at tau^2 ~ 1e-10)
    for (t in c(0, tau2 * 0.999, tau2 * 1.001, tau2 + 1e-6)) stopifnot(llf(t) <= ll0 + 1e-7)
  }
  # Q decomposition (Krahn 2013) via the interaction model
  B <- re_struct(cd)
  ix <- inc_X(cd)
  q_fe_inc <- rma.mv(cd$yi, cd$V, mods = ix$X, intercept = FALSE, method = "FE")$QE
  q_fe_cons <- rma.mv(cd$yi, cd$V, mods = X, intercept = FALSE, method = "FE")$QE
  Sig <- cd$V + tau2 * B
  q_re_inc <- rma.mv(cd$yi, Sig, mods = ix$X, intercept = FALSE, method = "FE")$QE
  q_re_cons <- rma.mv(cd$yi, Sig, mods = X, intercept = FALSE, method = "FE")$QE
  list(
    method = scalar(method), reference = scalar(reference), treatments = trts,
    params = params,
    estimate = unname(as.vector(coef(res))), se = unname(res$se),
    ci_low = unname(res$ci.lb), ci_high = unname(res$ci.ub),
    tau2 = scalar(tau2), QE = scalar(res$QE), QE_df = scalar(res$k - res$p),
    loglik = scalar(as.numeric(logLik(res))),
    Q_within_FE = scalar(q_fe_inc), Q_between_FE = scalar(q_fe_cons - q_fe_inc),
    Q_within_RE = scalar(q_re_inc), Q_between_RE = scalar(q_re_cons - q_re_inc),
    Q_within_df = scalar(length(cd$yi) - ncol(ix$X)),
    Q_between_df = scalar(ncol(ix$X) - length(params)),
    vcov = lapply(seq_len(nrow(vcov(res))), function(i) unname(vcov(res)[i, ])),
    inference = if (method == "FE") NULL else inference_ref(cd, X, res, method)
  )
}

## test = "t", prediction intervals (metafor predict) and Hartung-Knapp for a RE fit
inference_ref <- function(cd, X, res, method) {
  comp <- paste(cd$base, cd$trt, sep = "-"); study <- cd$study
  rt <- rma.mv(cd$yi, cd$V, mods = X, intercept = FALSE, random = ~ comp | study, rho = 1/2,
               struct = "CS", method = method, tau2 = res$tau2, test = "t")
  p <- ncol(X)
  pz <- predict(res, newmods = diag(p), tau2.levels = rep(1, p))
  pt <- predict(rt, newmods = diag(p), tau2.levels = rep(1, p))
  Sig <- cd$V + res$tau2 * re_struct(cd)
  r <- cd$yi - X %*% coef(res)
  q_re <- as.numeric(t(r) %*% solve(Sig, r))
  dfr <- length(cd$yi) - p
  se_hk <- res$se * sqrt(q_re / dfr)
  list(ci_low_t = unname(rt$ci.lb), ci_high_t = unname(rt$ci.ub), pval_t = unname(rt$pval),
       pi_low_z = unname(pz$pi.lb), pi_high_z = unname(pz$pi.ub),
       pi_low_t = unname(pt$pi.lb), pi_high_t = unname(pt$pi.ub),
       Q_re = scalar(q_re), se_hk = unname(se_hk),
       ci_low_hk = unname(as.vector(coef(res)) - qt(0.975, dfr) * se_hk),
       ci_high_hk = unname(as.vector(coef(res)) + qt(0.975, dfr) * se_hk))
}

## generalised method-of-moments tau^2 (Jackson, White & Riley 2012) by dense matrices
mom_tau2_dense <- function(y, V, X, B) {
  W <- solve(V); C <- solve(t(X) %*% W %*% X)
  r <- y - X %*% (C %*% t(X) %*% W %*% y)
  Q <- as.numeric(t(r) %*% W %*% r)
  den <- sum(diag(W %*% B)) - sum(diag(C %*% t(X) %*% W %*% B %*% W %*% X))
  max(0, (Q - (length(y) - ncol(X))) / den)
}
## generalised Paule-Mandel: residual Q at weights (V + tau2 B)^-1 equal to m - p (uniroot)
gq <- function(t, y, V, X, B) {
  W <- solve(V + t * B); C <- solve(t(X) %*% W %*% X)
  r <- y - X %*% (C %*% t(X) %*% W %*% y)
  as.numeric(t(r) %*% W %*% r)
}
pm_tau2_dense <- function(y, V, X, B) {
  df <- length(y) - ncol(X)
  if (gq(0, y, V, X, B) <= df) return(0)
  hi <- 1; while (gq(hi, y, V, X, B) > df) hi <- hi * 2
  uniroot(function(t) gq(t, y, V, X, B) - df, c(0, hi), tol = 1e-15, maxiter = 10000)$root
}
gls_fit <- function(y, V, X, B, t) {
  W <- solve(V + t * B); C <- solve(t(X) %*% W %*% X)
  list(b = as.vector(C %*% t(X) %*% W %*% y), se = sqrt(diag(C)))
}
moments_ref <- function(cd, reference) {
  trts <- csort(unique(c(cd$base, cd$trt)))
  X <- design_X(cd, setdiff(trts, reference)); B <- re_struct(cd)
  t_dl <- mom_tau2_dense(cd$yi, cd$V, X, B)
  t_pm <- pm_tau2_dense(cd$yi, cd$V, X, B)
  g_dl <- gls_fit(cd$yi, cd$V, X, B, t_dl); g_pm <- gls_fit(cd$yi, cd$V, X, B, t_pm)
  ix <- inc_X(cd)
  t_w <- if (nrow(ix$X) > ncol(ix$X)) mom_tau2_dense(cd$yi, cd$V, ix$X, B) else 0
  list(DL = list(tau2 = scalar(t_dl), estimate = g_dl$b, se = g_dl$se),
       PM = list(tau2 = scalar(t_pm), estimate = g_pm$b, se = g_pm$se),
       tau2_within_DL = scalar(t_w),
       Q_between_RE_within = scalar(gq(t_w, cd$yi, cd$V, X, B) - gq(t_w, cd$yi, cd$V, ix$X, B)))
}

## node-splitting, SIDE by exclusion, for a fitted tau2
node_split_ref <- function(cd, reference, tau2) {
  trts <- csort(unique(c(cd$base, cd$trt)))
  study_trts <- lapply(split(c(cd$base, cd$trt), c(cd$study, cd$study)), unique)
  out <- list()
  B <- re_struct(cd)
  for (i in seq_along(trts)) for (j in seq_along(trts)) {
    if (j <= i) next
    a <- trts[i]; b <- trts[j]   # effect of b relative to a
    has <- names(study_trts)[vapply(study_trts, function(v) a %in% v && b %in% v, TRUE)]
    if (!length(has)) next
    keep <- !(cd$study %in% has)
    rest <- cd$study[keep]
    # connectivity of a and b in remaining network
    g_tr <- unique(c(cd$base[keep], cd$trt[keep]))
    if (!(a %in% g_tr && b %in% g_tr)) next
    comp <- setNames(seq_along(g_tr), g_tr)
    repeat {
      changed <- FALSE
      for (r in which(keep)) {
        m <- min(comp[cd$base[r]], comp[cd$trt[r]])
        if (comp[cd$base[r]] != m || comp[cd$trt[r]] != m) {
          comp[comp == comp[cd$base[r]] | comp == comp[cd$trt[r]]] <- m; changed <- TRUE }
      }
      if (!changed) break
    }
    if (comp[a] != comp[b]) next
    # direct: pairwise contrasts b vs a from studies with both, FE weights 1/(v + tau2)
    yd <- c(); vd <- c()
    for (s in has) {
      r <- which(cd$study == s)
      base <- cd$base[r[1]]
      g <- rep(0, length(r))
      if (b != base) g[cd$trt[r] == b] <- 1
      if (a != base) g[cd$trt[r] == a] <- g[cd$trt[r] == a] - 1
      Vs <- cd$V[r, r, drop = FALSE]
      yd <- c(yd, sum(g * cd$yi[r])); vd <- c(vd, as.numeric(t(g) %*% Vs %*% g))
    }
    dres <- rma(yd, vd + tau2, method = "FE")
    # indirect: consistency model on the remaining studies, tau2 fixed
    sub <- list(yi = cd$yi[keep], base = cd$base[keep], trt = cd$trt[keep], study = cd$study[keep])
    ref2 <- a
    params <- setdiff(csort(unique(c(sub$base, sub$trt))), ref2)
    X <- design_X(sub, params)
    Sig <- cd$V[keep, keep] + tau2 * B[keep, keep]
    ires <- rma.mv(sub$yi, Sig, mods = X, intercept = FALSE, method = "FE")
    ind <- unname(coef(ires)[b]); ind_se <- unname(ires$se[which(params == b)])
    out[[length(out) + 1]] <- list(treat1 = scalar(b), treat2 = scalar(a),
      direct = scalar(as.numeric(coef(dres))), direct_se = scalar(dres$se),
      indirect = scalar(ind), indirect_se = scalar(ind_se))
  }
  out
}

## ------------------------------------------------------------ data sets
# With LNSYNTH_NETWORK_LIB=1 only the functions above are defined (used by the
# live R test in tests/test_network.py).
if (Sys.getenv("LNSYNTH_NETWORK_LIB") != "1") {
cases <- list()
add_case <- function(name, arms, measure, reference, nsplit = FALSE, contrast = NULL) {
  cd <- build(arms, measure, reference)
  fits <- list(FE = fit_one(cd, reference, "FE"), REML = fit_one(cd, reference, "REML"),
               ML = fit_one(cd, reference, "ML"))
  case <- list(name = scalar(name), measure = scalar(measure), reference = scalar(reference),
               arms = as.list(arms), dropped = if (length(cd$dropped)) cd$dropped else character(0),
               fits = fits, moments = moments_ref(cd, reference))
  if (nsplit) {
    case$node_split <- list(FE = node_split_ref(cd, reference, 0),
                            REML = node_split_ref(cd, reference, fits$REML$tau2))
  }
  if (!is.null(contrast)) case$contrasts <- contrast
  # escalc on the two-arm studies (treatment vs baseline; default add = 1/2, to = "only0")
  ta <- list(study = c(), yi = c(), vi = c())
  for (sid in setdiff(unique(arms$study), cd$dropped)) {
    a <- arms[arms$study == sid, ]
    if (nrow(a) != 2) next
    base <- if (reference %in% a$trt) reference else csort(a$trt)[1]
    b <- a[a$trt == base, ]; o <- a[a$trt != base, ]
    e <- if (measure %in% c("MD", "SMD")) escalc(measure, m1i = o$m, sd1i = o$s, n1i = o$n, m2i = b$m, sd2i = b$s, n2i = b$n)
         else escalc(measure, ai = o$x, n1i = o$n, ci = b$x, n2i = b$n)
    ta$study <- c(ta$study, sid); ta$yi <- c(ta$yi, as.numeric(e$yi)); ta$vi <- c(ta$vi, as.numeric(e$vi))
  }
  case$escalc_two_arm <- ta
  cases[[length(cases) + 1]] <<- case
}

## (a) random connected networks with multi-arm studies
set.seed(20240611)
for (r in 1:5) {
  Tn <- sample(4:6, 1)
  trts <- LETTERS[1:Tn]
  d <- c(0, rnorm(Tn - 1, 0, 0.6)); names(d) <- trts
  tau <- c(0, 0.2, 0.4, 0.3, 0)[r]
  ks <- sample(8:14, 1)
  rows <- list()
  for (s in seq_len(ks)) {
    arms_s <- if (s < Tn) c(trts[s], trts[s + 1]) else sort(sample(trts, sample(c(2, 2, 3), 1)))
    if (s == 1 && Tn >= 3) arms_s <- trts[1:3]
    mu <- rnorm(1, -1.5, 0.8)
    delta <- rnorm(length(arms_s), 0, tau)
    n <- sample(20:150, length(arms_s), replace = TRUE)
    p <- plogis(mu + d[arms_s] + delta - delta[1])
    x <- rbinom(length(n), n, p)
    rows[[s]] <- data.frame(study = sprintf("S%02d", s), trt = arms_s, x = x, n = n)
  }
  arms <- do.call(rbind, rows)
  if (r == 2) { arms$x[arms$study == "S03"] <- 0 }               # all-zero study (dropped)
  if (r == 3) { arms$x[arms$study == "S04"][1] <- 0 }            # single zero arm (corrected)
  if (r == 4) { arms$x[arms$study == "S05"] <- arms$n[arms$study == "S05"] }  # all events (dropped)
  ref <- if (r == 5) "C" else "A"
  add_case(sprintf("random%d", r), arms, "OR", ref, nsplit = (r == 1))
}
## RR and RD on random network 1 data
a1 <- data.frame(cases[[1]]$arms, stringsAsFactors = FALSE)
add_case("random1_RR", a1, "RR", "A")
add_case("random1_RD", a1, "RD", "A")

## (b) classic data sets
h <- dat.hasselblad1998
add_case("hasselblad1998", data.frame(study = as.character(h$study), trt = h$trt, x = h$xi, n = h$ni),
         "OR", "no_contact", nsplit = TRUE)

dg <- dat.dogliotti2014
add_case("dogliotti2014", data.frame(study = dg$study, trt = dg$treatment, x = dg$stroke, n = dg$total),
         "OR", "Placebo/Control", nsplit = TRUE)

l <- dat.linde2015
la <- rbind(data.frame(study = as.character(l$id), trt = l$treatment1, x = l$resp1, n = l$n1),
            data.frame(study = as.character(l$id), trt = l$treatment2, x = l$resp2, n = l$n2),
            data.frame(study = as.character(l$id), trt = l$treatment3, x = l$resp3, n = l$n3))
la <- la[!is.na(la$x) & la$trt != "", ]
la <- la[la$study %in% names(which(table(la$study) >= 2)), ]
la <- la[order(as.numeric(la$study)), ]
add_case("linde2015", la, "OR", "Placebo")

sn <- dat.senn2013
sa <- data.frame(study = sn$study, trt = sn$treatment, m = sn$mi, s = sn$sdi, n = sn$ni)
# contrast-level version: each non-placebo arm vs placebo (every study has placebo? use baseline)
cl <- list(study = c(), treat1 = c(), treat2 = c(), yi = c(), vi = c(), cov = c())
for (sid in unique(sa$study)) {
  a <- sa[sa$study == sid, ]
  base <- if ("placebo" %in% a$trt) "placebo" else csort(a$trt)[1]
  b <- a[a$trt == base, ]; o <- a[a$trt != base, ]
  cl$study <- c(cl$study, o$study); cl$treat1 <- c(cl$treat1, o$trt); cl$treat2 <- c(cl$treat2, rep(base, nrow(o)))
  cl$yi <- c(cl$yi, o$m - b$m); cl$vi <- c(cl$vi, o$s^2 / o$n + b$s^2 / b$n)
  cl$cov <- c(cl$cov, rep(b$s^2 / b$n, nrow(o)))
}
add_case("senn2013_MD", sa, "MD", "placebo", nsplit = TRUE, contrast = cl)
add_case("senn2013_SMD", sa, "SMD", "placebo")

## (c) a two-treatment network of two-arm studies is a pairwise meta-analysis: every
## estimator and Hartung-Knapp must equal metafor::rma (test = "knha"), PI from predict(rma)
b <- dat.bcg
ba <- rbind(data.frame(study = sprintf("B%02d", b$trial), trt = "BCG", x = b$tpos, n = b$tpos + b$tneg),
            data.frame(study = sprintf("B%02d", b$trial), trt = "Control", x = b$cpos, n = b$cpos + b$cneg))
ba <- ba[order(ba$study), ]
eb <- escalc("OR", ai = b$tpos, bi = b$tneg, ci = b$cpos, di = b$cneg)
pw <- list()
for (m in c("DL", "PM", "REML", "ML")) {
  rz <- rma(eb$yi, eb$vi, method = m, control = list(tol = 1e-12, threshold = 1e-12, maxiter = 10000))
  rk <- rma(eb$yi, eb$vi, method = m, test = "knha", control = list(tol = 1e-12, threshold = 1e-12, maxiter = 10000))
  pz <- predict(rz)
  pw[[m]] <- list(tau2 = scalar(rz$tau2), estimate = scalar(as.numeric(coef(rz))), se = scalar(rz$se),
                  se_knha = scalar(rk$se), ci_low_knha = scalar(rk$ci.lb), ci_high_knha = scalar(rk$ci.ub),
                  pi_low_z = scalar(pz$pi.lb), pi_high_z = scalar(pz$pi.ub),
                  QE = scalar(rz$QE), I2 = scalar(rz$I2))
}
pairwise_case <- list(arms = as.list(ba), reference = scalar("Control"), measure = scalar("OR"), fits = pw)

ref <- list(metafor_version = scalar(as.character(packageVersion("metafor"))),
            R_version = scalar(R.version.string), cases = cases,
            pairwise_bcg = pairwise_case)
writeLines(to_json(ref), out_path)
cat("wrote", out_path, "with", length(cases), "cases\n")
}
