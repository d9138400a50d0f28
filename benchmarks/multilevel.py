"""Benchmark: three-level REML meta-analyses, lnsynth batched vs metafor ``rma.mv`` per fit (not a test).

Data: ``--n`` simulated three-level meta-analyses with the design of dat.konstantopoulos2011
(56 effect sizes in 11 clusters of 3 to 11; the real vi, true sigma2 = (0.065, 0.033), mu = 0.18;
seed 20261207).  lnsynth fits all of them in one ``multilevel_meta_analysis`` call (best of
``--reps``); metafor fits the first ``--r-subset`` in a loop with its default control (timed inside
R, scaled per fit), then again at tight convergence (rel.tol 1e-12, falling back to 1e-10 where
nlminb reports false convergence) to measure agreement.  The ratio is metafor's time per fit over
lnsynth's time per fit.

Usage:  .venv/bin/python benchmarks/multilevel.py [--n 2000] [--r-subset 100] [--reps 3] [--method REML]
Writes benchmarks/results-multilevel.md (``--out`` to change).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

R_SCRIPT = r"""
suppressPackageStartupMessages(library(metafor))
args <- commandArgs(trailingOnly = TRUE)
d <- as.matrix(read.csv(args[1], header = FALSE)); n <- as.integer(args[2]); k <- as.integer(args[3])
method <- args[5]
Y <- d[, 1:k]; V <- d[, (k + 1):(2 * k)]; cl <- d[1, (2 * k + 1):(3 * k)]; es <- seq_len(k)
t0 <- proc.time()[["elapsed"]]
nfail <- 0
for (i in 1:n) { f <- try(rma.mv(Y[i, ], V[i, ], random = ~ 1 | cl / es, method = method), silent = TRUE)
                 if (inherits(f, "try-error")) nfail <- nfail + 1 }
t_default <- proc.time()[["elapsed"]] - t0
out <- matrix(NA_real_, n, 4)
for (i in 1:n) {
  for (rt in c(1e-12, 1e-10)) {
    f <- try(rma.mv(Y[i, ], V[i, ], random = ~ 1 | cl / es, method = method,
                    control = list(rel.tol = rt, iter.max = 1000, eval.max = 5000)), silent = TRUE)
    if (!inherits(f, "try-error")) break
  }
  if (!inherits(f, "try-error")) out[i, ] <- c(f$beta[1], f$se, f$sigma2)
}
write.table(out, args[4], sep = ",", row.names = FALSE, col.names = FALSE)
cat(sprintf("%.17g %d %s\n", t_default, nfail, as.character(packageVersion("metafor"))))
"""


def machine_info() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import scipy

    try:
        load = "load average %.2f/%.2f/%.2f at start" % os.getloadavg()
    except OSError:
        load = "load unknown"
    return (f"{cpu}; {os.cpu_count()} logical CPUs (shared with other jobs, {load}); {platform.platform()}; "
            f"Python {platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}")


def simulate(n: int, seed: int = 20261207):
    """Konstantopoulos-like design: the real vi and clusters, simulated yi."""
    import json

    ref = json.loads((ROOT / "tests/reference/multilevel_reference.json").read_text())
    case = next(c for c in ref["cases"] if c["name"] == "konstantopoulos2011_REML")
    vi = np.asarray(case["vi"])
    labels, cl = np.unique(case["cluster"], return_inverse=True)
    rng = np.random.default_rng(seed)
    k, m = vi.size, labels.size
    u = rng.normal(0.0, np.sqrt(0.065), (n, m))[:, cl]
    w = rng.normal(0.0, np.sqrt(0.033), (n, k))
    e = rng.normal(0.0, np.sqrt(vi), (n, k))
    return 0.18 + u + w + e, np.tile(vi, (n, 1)), cl + 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--r-subset", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--method", default="REML", choices=["REML", "ML"])
    ap.add_argument("--out", default=str(HERE / "results-multilevel.md"))
    args = ap.parse_args()
    machine = machine_info()
    from lnsynth.pairwise import multilevel_meta_analysis

    Y, V, cl = simulate(args.n)
    k = Y.shape[1]
    multilevel_meta_analysis(Y[:4], V[:4], cl, method=args.method)  # imports, first-call overhead
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = multilevel_meta_analysis(Y, V, cl, method=args.method)
        times.append(time.perf_counter() - t0)
    t_ours = min(times) / args.n
    t0 = time.perf_counter()
    for i in range(min(args.r_subset, args.n)):
        multilevel_meta_analysis(Y[i], V[i], cl, method=args.method)
    t_loop = (time.perf_counter() - t0) / min(args.r_subset, args.n)
    n_conv = int(res.converged.sum())
    iters = res.iterations

    r_line, agree, t_r, version = "metafor not run (Rscript not found)", None, None, None
    nr = min(args.r_subset, args.n)
    if shutil.which("Rscript"):
        with tempfile.TemporaryDirectory() as tmp:
            csv, rfile, outc = Path(tmp) / "d.csv", Path(tmp) / "b.R", Path(tmp) / "o.csv"
            np.savetxt(csv, np.hstack([Y[:nr], V[:nr], np.tile(cl, (nr, 1))]), delimiter=",", fmt="%.17g")
            rfile.write_text(R_SCRIPT)
            p = subprocess.run(["Rscript", str(rfile), str(csv), str(nr), str(k), str(outc), args.method],
                               capture_output=True, text=True, timeout=3600)
            if p.returncode == 0:
                t_def, nfail, version = p.stdout.split()[-3:]
                t_r = float(t_def) / nr
                ref = np.loadtxt(outc, delimiter=",", ndmin=2)
                ok = np.isfinite(ref).all(1)
                ours = np.column_stack([res.estimate[:nr], res.se[:nr], res.sigma2[:nr]])
                diff = np.abs(ours[ok] - ref[ok])
                agree = (int(ok.sum()), diff[:, 0].max(), diff[:, 1].max(), diff[:, 2:].max(), int(nfail))
                r_line = f"metafor {version}"
            else:
                r_line = f"metafor failed: {p.stderr[-300:]}"

    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Three-level meta-analysis benchmark: rma.mv(yi, vi, random = ~ 1 | cluster/es)", "",
             f"Generated by `benchmarks/multilevel.py` on {now}.", "", f"Machine: {machine}.", "",
             f"Data: {args.n:,} simulated three-level meta-analyses with the design of dat.konstantopoulos2011 "
             f"(k = {k} effect sizes in {cl.max()} clusters, its vi; sigma2 = (0.065, 0.033), mu = 0.18; seed "
             "20261207). R reads the same numbers from a CSV written with 17 significant digits.", "",
             f"Method {args.method}; lnsynth converged on {n_conv:,} of {args.n:,} (Newton/Fisher scoring, "
             f"iterations median {int(np.median(iters))}, max {int(iters.max())}).", "",
             "| implementation | per fit (us) | lnsynth batched is faster by |", "|---|---:|---:|",
             f"| lnsynth `multilevel_meta_analysis`, batched ({args.n:,} fits, one call, best of {args.reps}) "
             f"| {t_ours * 1e6:,.1f} | |",
             f"| lnsynth, one call per fit (Python loop, {nr} fits) | {t_loop * 1e6:,.1f} | {t_loop / t_ours:,.1f}x |"]
    if t_r is not None:
        lines.append(f"| {r_line} `rma.mv()` loop, default control ({nr} fits, timed in R, scaled) "
                     f"| {t_r * 1e6:,.1f} | **{t_r / t_ours:,.0f}x** |")
    else:
        lines.append(f"| {r_line} | | |")
    lines += ["", "pimeta was not installed in this run (not compared)."]
    if agree is not None:
        n_ok, d_est, d_se, d_s2, nfail = agree
        lines += ["", "## Agreement with metafor (tight convergence: nlminb rel.tol 1e-12, else 1e-10)", "",
                  f"Over the first {n_ok} fits (metafor default-control failures in the timed loop: {nfail}):", "",
                  "| statistic | max abs diff |", "|---|---:|",
                  f"| estimate | {d_est:.2e} |", f"| se | {d_se:.2e} |", f"| sigma2 (both) | {d_s2:.2e} |"]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
