"""Benchmark: selection models, lnsynth.pairwise.selection_model vs metafor selmodel() (not a test).

Same data, same run: the two data sets of tests/reference/selmodel_reference.json
(dat.hackshaw1998, k = 37, ML fit; dat.bangertdrowns2004, k = 48, REML fit refitted by ML),
step functions (the contract call ``selection_model(result, type="step", steps=(0.025,))``
and three cut points) and two continuous types.  metafor runs with its default control
(what a user gets: optim/BFGS, integrate() at rel.tol 1.2e-4, numDeriv Hessian) in one Rscript
process (``system.time`` over a loop, per fit); lnsynth is timed in this process, median of
repeated calls.  Both sides include everything selmodel()/selection_model() compute (ML refit,
optimisation, Hessian, the likelihood-ratio tests).  Reports the per-fit times, the ratio and the
largest absolute difference of estimate / tau2 / delta from metafor's defaults.

Usage:  .venv/bin/python benchmarks/selmodel.py [--reps 20] [--r-reps 10]
Writes benchmarks/results-selmodel.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy

from lnsynth.pairwise import meta_analysis, selection_model

ROOT = Path(__file__).resolve().parent.parent
REF = json.loads((ROOT / "tests" / "reference" / "selmodel_reference.json").read_text())["cases"]

# (label, reference case giving the data and the input method, type, steps)
CASES = [
    ("hackshaw, step (0.025)", "hackshaw_ML_step_025", "step", (0.025,)),
    ("bangert (REML input), step (0.025)", "bangert_REML_step_025", "step", (0.025,)),
    ("hackshaw, step (0.025, 0.10, 0.50)", "hackshaw_ML_step_3", "step", (0.025, 0.10, 0.50)),
    ("hackshaw FE, step (0.025)", "hackshaw_FE_step_025", "step", (0.025,)),
    ("hackshaw, negexp", "hackshaw_ML_negexp", "negexp", None),
    ("hackshaw, beta", "hackshaw_ML_beta", "beta", None),
]

R_CODE = r"""
suppressPackageStartupMessages(library(metafor))
inp <- jsonlite::fromJSON(commandArgs(trailingOnly = TRUE)[1], simplifyVector = FALSE)
out <- list()
for (cs in inp) {
  fit <- rma(as.numeric(unlist(cs$yi)), as.numeric(unlist(cs$vi)), method = cs$method)
  steps <- if (is.null(cs$steps)) NULL else as.numeric(unlist(cs$steps))
  one <- function() {
    if (is.null(steps)) suppressWarnings(selmodel(fit, type = cs$type))
    else suppressWarnings(selmodel(fit, type = cs$type, steps = steps))
  }
  s <- one()
  reps <- cs$reps
  el <- system.time(for (i in seq_len(reps)) one())[["elapsed"]]
  out[[length(out) + 1]] <- list(label = cs$label, per_fit = el / reps, reps = reps,
                                 estimate = as.numeric(s$beta), tau2 = s$tau2, delta = as.numeric(s$delta))
}
writeLines(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA), commandArgs(trailingOnly = TRUE)[2])
"""


def time_python(res, typ, steps, reps):
    kw = {"type": typ} if steps is None else {"type": typ, "steps": steps}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = selection_model(res, **kw)  # warm-up (lazy imports)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            selection_model(res, **kw)
            times.append(time.perf_counter() - t)
    return float(np.median(times)), sel


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20, help="lnsynth calls per case (median)")
    ap.add_argument("--r-reps", type=int, default=10, help="metafor calls per step case (continuous: 1/5)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results-selmodel.md"))
    args = ap.parse_args()

    inputs, py = [], {}
    for label, key, typ, steps in CASES:
        c = REF[key]
        res = meta_analysis(yi=np.array(c["yi"]), vi=np.array(c["vi"]), method=c["method"])
        reps = args.reps if typ == "step" else max(2, args.reps // 5)
        py[label] = time_python(res, typ, steps, reps)
        inputs.append({"label": label, "yi": c["yi"], "vi": c["vi"], "method": c["method"],
                       "type": "stepfun" if typ == "step" else typ, "steps": steps,
                       "reps": args.r_reps if typ == "step" else max(1, args.r_reps // 5)})
    with tempfile.TemporaryDirectory() as tmp:
        rfile, ifile, ofile = (os.path.join(tmp, n) for n in ("bench.R", "in.json", "out.json"))
        Path(rfile).write_text(R_CODE)
        Path(ifile).write_text(json.dumps(inputs))
        subprocess.run(["Rscript", rfile, ifile, ofile], check=True, capture_output=True)
        rout = {d["label"]: d for d in json.loads(Path(ofile).read_text())}
        rver = subprocess.run(["Rscript", "-e", "cat(as.character(packageVersion('metafor')))"],
                              capture_output=True, text=True).stdout.strip()

    rows = []
    for label, key, typ, steps in CASES:
        tp, sel = py[label]
        r = rout[label]
        dd = max(abs(sel.estimate - r["estimate"]), abs(sel.tau2 - r["tau2"]),
                 float(np.max(np.abs(np.asarray(sel.delta) - np.asarray(r["delta"], dtype=float)))))
        rows.append(f"| {label} | {tp * 1e3:,.2f} | {r['per_fit'] * 1e3:,.1f} | {r['per_fit'] / tp:,.0f}x | {dd:.1e} |")
    load = os.getloadavg()
    text = "\n".join([
        "# Selection-model benchmark: lnsynth `selection_model` vs metafor `selmodel`", "",
        f"Generated by `benchmarks/selmodel.py` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        f"Machine: {platform.processor() or platform.machine()}; {os.cpu_count()} logical CPUs (shared with other "
        f"jobs, load average {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} at the end); {platform.platform()}; "
        f"Python {platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}; metafor {rver}.", "",
        "Per fit: lnsynth median of repeated calls in this process; metafor `system.time` over a loop in one "
        "Rscript process, default control (optim/BFGS, `integrate()` at rel.tol 1.2e-4, numDeriv Hessian). "
        "Both include the ML refit, the optimisation, the Hessian (SEs) and the likelihood-ratio tests "
        "(selection, and tau2 = 0 under selection).", "",
        "| data, model | lnsynth per fit (ms) | metafor per fit (ms) | lnsynth faster by | max abs diff vs metafor defaults (estimate, tau2, delta) |",
        "|---|---:|---:|---:|---:|", *rows, "",
        "The differences in the last column are metafor's default convergence and integration tolerances "
        "(at tight control, tests/test_selmodel.py agrees to 1e-6).", "",
        "Not met: the issue's target (selection models >= 50x metafor).  lnsynth runs three Newton starts "
        "for the model and two for the tau2 = 0 refit, one at a time, in NumPy (analytic derivatives for "
        "the step function, finite differences and a Richardson-extrapolated Hessian for the continuous "
        "types); a batched multi-start Newton or a compiled likelihood would be needed for 50x.", ""])
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
