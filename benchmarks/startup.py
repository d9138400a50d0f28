"""Benchmark: command-line start-up time (not a test).

Times, in one run, with ``time.perf_counter`` around ``subprocess.run``:

* ``python -m lnsynth meta --input docs/examples/bcg.csv --format json --out DIR``
  (reads the CSV, fits REML, writes summary.*, forest.png|svg|pdf and funnel.png|svg|pdf);
* the same with ``--fig-format png`` (one format per figure);
* the same with ``--plot ''`` (no figures: start-up, reading and fitting alone);
* that again with ``LNSYNTH_JIT=1`` (the compiled numba kernels instead of the interpreted
  ones a single analysis uses: what the numba start-up costs);
* ``python -m lnsynth --version``.

Each is run cold and warm, ``--repeat`` times (default 5), and the median is reported:

* cold: every run gets a fresh, empty ``NUMBA_CACHE_DIR``, so the numba kernels compile
  as on a new install (Python byte code is already compiled, as pip does at install);
* warm: the numba cache is filled by one untimed run first, then each run loads it.

Peak resident memory of each child (``ru_maxrss``) is reported where the OS gives it.

Usage:  .venv/bin/python benchmarks/startup.py [--repeat 5] [--label TEXT]
Writes benchmarks/results-startup.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

COMMANDS = {
    "meta": ["-m", "lnsynth", "meta", "--input", "docs/examples/bcg.csv", "--format", "json", "--out", "{out}"],
    "meta, png only": ["-m", "lnsynth", "meta", "--input", "docs/examples/bcg.csv", "--format", "json", "--out", "{out}",
                       "--fig-format", "png"],
    "meta, no figures": ["-m", "lnsynth", "meta", "--input", "docs/examples/bcg.csv", "--format", "json", "--out", "{out}",
                         "--plot", ""],
    "meta, no figures, numba": ["-m", "lnsynth", "meta", "--input", "docs/examples/bcg.csv", "--format", "json",
                                "--out", "{out}", "--plot", ""],
    "--version": ["-m", "lnsynth", "--version"],
}
ENV = {"meta, no figures, numba": {"LNSYNTH_JIT": "1"}}


def _run(args: list[str], env: dict[str, str], out: str) -> float:
    cmd = [sys.executable] + [a.replace("{out}", out) for a in args]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    dt_ = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return dt_


def _rss_of(args: list[str], env: dict[str, str], out: str) -> float | None:
    """Peak RSS (MB) of one run, measured in a helper process so children do not mix."""
    code = (
        "import resource, subprocess, sys; "
        f"subprocess.run({[sys.executable] + [a.replace('{out}', out) for a in args]!r}, "
        "capture_output=True, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    try:
        p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    except (subprocess.CalledProcessError, ImportError):
        return None
    kb = float(p.stdout.strip() or 0)
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--label", default="", help="free text for the results file (e.g. 'before')")
    ap.add_argument("--results", default=str(HERE / "results-startup.md"))
    a = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out")
        base = {k: v for k, v in os.environ.items() if k != "LNSYNTH_JIT"}
        for name, args in COMMANDS.items():
            warm_env = dict(base, NUMBA_CACHE_DIR=str(Path(tmp) / "numba-warm"), **ENV.get(name, {}))
            cold = []
            for i in range(a.repeat):
                env = dict(base, NUMBA_CACHE_DIR=str(Path(tmp) / f"numba-cold-{name}-{i}"), **ENV.get(name, {}))
                cold.append(_run(args, env, out))
            _run(args, warm_env, out)  # fill the cache
            warm = [_run(args, warm_env, out) for _ in range(a.repeat)]
            rss = _rss_of(args, warm_env, out)
            rows.append((name, statistics.median(cold), min(cold), statistics.median(warm), min(warm), rss))
            print(f"{name:24s} cold median {statistics.median(cold):6.2f} s   warm median {statistics.median(warm):6.2f} s"
                  + (f"   warm peak RSS {rss:5.0f} MB" if rss else ""), flush=True)

    import numba
    import numpy

    lines = [
        "# Start-up benchmark",
        "",
        f"Run {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by `benchmarks/startup.py`"
        + (f" ({a.label})" if a.label else "") + f"; {a.repeat} repeats per cell, median (min) in seconds,",
        "wall clock of `subprocess.run` around a fresh `python` process.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, numpy {numpy.__version__}, numba {numba.__version__}.",
        "",
        "Cold: fresh empty `NUMBA_CACHE_DIR` per run (numba kernels compile, as on a new install).",
        "Warm: numba cache filled by one untimed run.",
        "",
        "| command | cold median (min) | warm median (min) | warm peak RSS |",
        "|---|---|---|---|",
    ]
    for name, cm, cmin, wm, wmin, rss in rows:
        cmd = " ".join([f"{k}={v}" for k, v in ENV.get(name, {}).items()] + ["python"]
                       + [x.replace("{out}", "DIR") or "''" for x in COMMANDS[name]])
        lines.append(f"| `{cmd}` | {cm:.2f} ({cmin:.2f}) | {wm:.2f} ({wmin:.2f}) | "
                     + (f"{rss:.0f} MB" if rss else "n/a") + " |")
    lines.append("")
    Path(a.results).write_text("\n".join(lines))
    print(f"wrote {a.results}")


if __name__ == "__main__":
    main()
