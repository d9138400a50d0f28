"""Benchmark: cluster-robust inference, permutation tests and location-scale models, lnsynth vs metafor (not a test).

One run, same machine, each side timed in its own process (R: ``proc.time`` around the calls; Python:
``time.perf_counter``, best of ``--reps``), on the reference data of the tests:

* ``permutest`` exact, intercept-only REML (the first 12 studies of a simulated set: 4096 sign flips);
* ``permutest`` exact, REML meta-regression on one moderator, k = 7 (5040 permutations);
* ``robust`` CR1 and CR2 (clubSandwich) of a REML meta-regression (tests/reference/robust_reference.json,
  case sim1_x1x2_REML: 30 estimates in 10 clusters), per call;
* location-scale REML (dat.bcg, scale ~ ablat), per fit.

The ratio is metafor's time over lnsynth's.  Usage: .venv/bin/python benchmarks/robust_permutest.py [--reps 3]
Writes benchmarks/results-robust.md (``--out`` to change).  Needs R with metafor (and clubSandwich for CR2).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
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
sys.path.insert(0, str(HERE))

R_SCRIPT = r"""
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
d <- fromJSON(commandArgs(trailingOnly = TRUE)[1])
tm <- function(expr, n = 1) { t0 <- proc.time()[["elapsed"]]; for (i in 1:n) eval(expr); (proc.time()[["elapsed"]] - t0) / n }
out <- list()
r <- rma(d$p1$yi, d$p1$vi)
out$perm_int <- tm(quote(permutest(r, exact = TRUE, progbar = FALSE)))
r <- rma(d$p2$yi, d$p2$vi, mods = ~ d$p2$x)
out$perm_reg <- tm(quote(permutest(r, exact = TRUE, progbar = FALSE)))
X <- d$rob$X
r <- rma(d$rob$yi, d$rob$vi, mods = X[, -1])
cl <- d$rob$cluster
out$cr1 <- tm(quote(robust(r, cluster = cl)), 50)
out$cr2 <- if (requireNamespace("clubSandwich", quietly = TRUE)) tm(quote(robust(r, cluster = cl, clubSandwich = TRUE)), 20) else NA
out$ls <- tm(quote(rma(d$ls$yi, d$ls$vi, scale = ~ d$ls$z)), 20)
out$metafor <- as.character(packageVersion("metafor"))
cat(toJSON(out, auto_unbox = TRUE, digits = NA))
"""


def best(f, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results-robust.md"))
    args = ap.parse_args()
    from multilevel import machine_info

    from lnsynth.pairwise import location_scale, meta_analysis, meta_regression, permutation_test, robust

    machine = machine_info()
    rng = np.random.default_rng(20261208)
    v1 = rng.uniform(0.01, 0.2, 12)
    p1 = {"yi": (0.15 + rng.normal(0, np.sqrt(v1 + 0.05))).tolist(), "vi": v1.tolist()}
    v2 = rng.uniform(0.01, 0.2, 7)
    x2 = rng.normal(size=7)
    p2 = {"yi": (0.1 + 0.3 * x2 + rng.normal(0, np.sqrt(v2 + 0.02))).tolist(), "vi": v2.tolist(), "x": x2.tolist()}
    rob = next(c for c in json.loads((ROOT / "tests/reference/robust_reference.json").read_text())["cases"]
               if c["name"] == "sim1_x1x2_REML")
    ls = next(c for c in json.loads((ROOT / "tests/reference/location_scale_reference.json").read_text())["cases"]
              if c["name"] == "bcg_scale_ablat_REML")
    data = {"p1": p1, "p2": p2, "rob": {k: rob[k] for k in ("yi", "vi", "X", "cluster")},
            "ls": {k: ls[k] for k in ("yi", "vi", "z")}}
    warnings.simplefilter("ignore")
    f1 = meta_analysis(yi=p1["yi"], vi=p1["vi"])
    f2 = meta_regression(p2["yi"], p2["vi"], {"x": x2})
    fr = meta_regression(rob["yi"], rob["vi"], np.array(rob["X"])[:, 1:])
    for f in (lambda: permutation_test(f1, exact=True), lambda: robust(fr, rob["cluster"], clubsandwich=True),
              lambda: location_scale(ls["yi"], ls["vi"], scale=ls["z"])):
        f()  # imports, first call
    ours = {
        "perm_int": best(lambda: permutation_test(f1, exact=True), args.reps),
        "perm_reg": best(lambda: permutation_test(f2, exact=True), args.reps),
        "cr1": best(lambda: robust(fr, rob["cluster"]), args.reps * 10),
        "cr2": best(lambda: robust(fr, rob["cluster"], clubsandwich=True), args.reps * 10),
        "ls": best(lambda: location_scale(ls["yi"], ls["vi"], scale=ls["z"]), args.reps * 10),
    }
    with tempfile.TemporaryDirectory() as tmp:
        js = Path(tmp) / "d.json"
        js.write_text(json.dumps(data))
        rs = Path(tmp) / "b.R"
        rs.write_text(R_SCRIPT)
        out = subprocess.run(["Rscript", str(rs), str(js)], capture_output=True, text=True, check=True).stdout
    theirs = json.loads(out.strip().splitlines()[-1])
    rows = [("perm_int", "permutest exact, intercept-only REML, k = 12 (4096 sign flips), per test"),
            ("perm_reg", "permutest exact, REML meta-regression, k = 7 (5040 permutations), per test"),
            ("cr1", "robust CR1, REML meta-regression, 30 estimates / 10 clusters, per call"),
            ("cr2", "robust CR2 (clubSandwich), same model, per call"),
            ("ls", "location-scale REML (dat.bcg, scale ~ ablat), per fit")]
    lines = [f"# Robust inference, permutation tests, location-scale models: lnsynth vs metafor {theirs['metafor']}",
             "", f"Run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `benchmarks/robust_permutest.py` "
             f"(one run, both sides on this machine). Machine: {machine}.", "",
             "| what | metafor (s) | lnsynth (s) | ratio |", "|---|---:|---:|---:|"]
    for key, label in rows:
        t_r = theirs.get(key)
        t_o = ours[key]
        ratio = f"{t_r / t_o:.1f}x" if isinstance(t_r, (int, float)) and t_r and t_o else "n/a"
        shown = f"{t_r:.4g}" if isinstance(t_r, (int, float)) else "n/a"
        lines.append(f"| {label} | {shown} | {t_o:.4g} | {ratio} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
