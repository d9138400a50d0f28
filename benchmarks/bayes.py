"""Benchmark the exact-likelihood engines: Bayesian NMA (effective samples per second) and the binomial
GLMM (time ratio against metafor's rma.glmm in the same run).

Usage: .venv/bin/python benchmarks/bayes.py [--out benchmarks/results-bayes.md] [--no-r]

* Bayesian NMA (lnsynth.network.bayes.bayesian_nma, NUTS in NumPyro on CPU): the TSD4 smoking network
  (random effects) and thrombolytics network (fixed effect), 2 chains x 1000 warm-up + 1000 draws.  Reported:
  wall time of the first call (JAX/XLA compilation included), of a second call (compilation cache warm:
  LNSYNTH_JAX_CACHE_DIR), the minimum bulk and tail ESS over the treatment effects (and tau), and ESS per
  second of each call.  No Bayesian peer (Stan/JAGS/multinma) is installed here, so no ratio is given.
* GLMM (lnsynth.pairwise.glmm.glmm_meta_analysis): dat.bcg and dat.nielweise2007, UM.FS ML (nAGQ = 7) and
  CM.EL ML, median of repeated fits, against metafor::rma.glmm timed in R (system.time, same machine, same
  run) with metafor's default controls.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

R_GLMM = r"""
suppressPackageStartupMessages({library(metafor); library(metadat)})
tm <- function(expr, reps) { t <- numeric(reps); for (i in seq_len(reps)) t[i] <- system.time(eval(expr))[["elapsed"]]; median(t) }
b <- dat.bcg; nw <- dat.nielweise2007
out <- c(
  bcg_UMFS = tm(quote(rma.glmm(measure="OR", ai=tpos, bi=tneg, ci=cpos, di=cneg, data=b, model="UM.FS")), 3),
  nielweise_UMFS = tm(quote(suppressWarnings(rma.glmm(measure="OR", ai=ai, n1i=n1i, ci=ci, n2i=n2i, data=nw, model="UM.FS"))), 3),
  nielweise_CMEL = tm(quote(suppressWarnings(rma.glmm(measure="OR", ai=ai, n1i=n1i, ci=ci, n2i=n2i, data=nw, model="CM.EL"))), 1))
cat(sprintf("%s=%.6f\n", names(out), out), sep="")
"""


def _bayes_rows():
    import test_published_tsd4_smoking as smk
    import test_published_tsd4_thrombolytics as thr

    from lnsynth.network.bayes import bayesian_nma

    os.environ.setdefault("LNSYNTH_JAX_CACHE_DIR", os.path.join(tempfile.gettempdir(), "lnsynth-jax-cache-bench"))
    cases = [
        ("smoking (24 studies, 4 treatments), random effects", smk.arms(), dict(reference="A", effects="random")),
        ("thrombolytics (50 studies, 9 treatments), fixed effect", thr.arms(),
         dict(treatments=thr.NAMES, reference="SK", effects="fixed")),
    ]
    rows = []
    for label, arms, kw in cases:
        walls, res = [], None
        for _ in range(2):
            t0 = time.perf_counter()
            res = bayesian_nma(arms, study="study", treatment="trt", events="r", n="n", chains=2, warmup=1000,
                               samples=1000, seed=1, **kw)
            walls.append(time.perf_counter() - t0)
        dg = res.diagnostics
        keep = [i for i in dg.index if i.startswith("d[") or i == "tau"]
        ess_b = float(dg.loc[keep, "ess_bulk"].min())
        ess_t = float(dg.loc[keep, "ess_tail"].min())
        rows.append(dict(case=label, wall_first=walls[0], wall_second=walls[1], ess_bulk=ess_b, ess_tail=ess_t,
                         ess_per_s_first=ess_b / walls[0], ess_per_s_second=ess_b / walls[1],
                         steps=res.settings["mean_leapfrog_steps"], divergences=res.divergences,
                         rhat=float(dg.loc[keep, "r_hat"].max())))
    return rows


def _glmm_rows(with_r: bool):
    import numpy as np

    from lnsynth.pairwise.glmm import GLMMWarning, glmm_meta_analysis

    ref = json.loads((ROOT / "tests/reference/glmm_reference.json").read_text())

    def data(name):
        c = next(c for c in ref["cases"] if c["dataset"] == name)
        keep = [x is not None for x in c["ai"]]
        return [np.array([x for x, k in zip(c[f], keep) if k], float) for f in ("ai", "n1i", "ci", "n2i")]

    cases = [("bcg_UMFS", "dat.bcg, UM.FS ML nAGQ=7", data("bcg"), dict(model="UM.FS"), 5),
             ("nielweise_UMFS", "dat.nielweise2007, UM.FS ML nAGQ=7", data("nielweise2007"), dict(model="UM.FS"), 5),
             ("nielweise_CMEL", "dat.nielweise2007, CM.EL ML", data("nielweise2007"), dict(model="CM.EL"), 3)]
    r_times = {}
    if with_r:
        out = subprocess.run(["Rscript", "-e", R_GLMM], capture_output=True, text=True, timeout=1800)
        for line in out.stdout.splitlines():
            if "=" in line:
                k, v = line.split("=")
                r_times[k] = float(v)
    rows = []
    for key, label, d, kw, reps in cases:
        ts = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GLMMWarning)
            for _ in range(reps):
                t0 = time.perf_counter()
                glmm_meta_analysis(*d, **kw)
                ts.append(time.perf_counter() - t0)
        ours = statistics.median(ts)
        r = r_times.get(key)
        rows.append(dict(case=label, ours=ours, metafor=r, ratio=(r / ours) if r else None))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results-bayes.md"))
    ap.add_argument("--no-r", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    glmm = _glmm_rows(not args.no_r)
    bayes = _bayes_rows()
    import jax
    import numpyro

    lines = ["# Exact-likelihood engines: benchmark", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, {os.cpu_count()} CPUs, "
             f"load average {load:.1f} at start (the machine is shared: wall times are upper bounds); "
             f"JAX {jax.__version__} (CPU, float64), NumPyro {numpyro.__version__}.", "",
             "## Bayesian NMA (NUTS): effective samples per second", "",
             "2 chains x (1000 warm-up + 1000 draws); ESS = minimum bulk ESS over the treatment effects (and tau). "
             "First call includes JAX/XLA compilation; the second reuses the persistent compilation cache.", "",
             "| network | wall 1st (s) | wall 2nd (s) | min ESS bulk | min ESS tail | ESS/s 1st | ESS/s 2nd | "
             "mean leapfrog steps | divergences | max R-hat |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in bayes:
        lines.append(f"| {r['case']} | {r['wall_first']:.1f} | {r['wall_second']:.1f} | {r['ess_bulk']:.0f} | "
                     f"{r['ess_tail']:.0f} | {r['ess_per_s_first']:.1f} | {r['ess_per_s_second']:.1f} | "
                     f"{r['steps']:.1f} | {r['divergences']} | {r['rhat']:.3f} |")
    lines += ["", "No Bayesian peer (Stan, JAGS, multinma, gemtc) is installed in this environment, so no ratio.", "",
              "## Binomial GLMM: lnsynth vs metafor::rma.glmm (same run)", "",
              "| data / model | lnsynth (s, median) | metafor (s, median) | metafor / lnsynth |", "|---|---|---|---|"]
    for r in glmm:
        m = f"{r['metafor']:.3f}" if r["metafor"] is not None else "n/a"
        q = f"{r['ratio']:.1f}x" if r["ratio"] is not None else "n/a"
        lines.append(f"| {r['case']} | {r['ours']:.3f} | {m} | {q} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
