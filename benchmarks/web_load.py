"""Load benchmark of the web app on 127.0.0.1 (not a test).

Starts ``lnsynth.web.serve`` in a separate process on a fresh SQLite store and a free
port, then sends a bounded number of requests (default 2,000) from 20 concurrent
clients (threads, one keep-alive ``httpx.Client`` each): a fixed mix of GETs (trial
list, a trial's outcomes, the trial page HTML, the pairwise analysis page in four
variants, /healthz) and authenticated POSTs of new outcomes, spread over every trial.  Reports p50/p95/p99/max latency per request kind and overall, the
error count (any exception or unexpected status; target 0) and checks afterwards that
every accepted POST is stored and audited (nothing lost).

Only 127.0.0.1 is contacted; the run stops early at ``--max-seconds``.

Usage:  .venv/bin/python benchmarks/web_load.py [--requests 2000] [--clients 20] [--out benchmarks/results_web.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

HOST = "127.0.0.1"
TOKEN = "bench-" + os.urandom(8).hex()
TRIAL = "bao2008"  # warm-up page
MIX = [("GET /api/trials", 0.20), ("GET /api/trials/{id}/outcomes", 0.20), ("GET /trials/{id} (HTML)", 0.10),
       ("GET /healthz", 0.05), ("GET /analysis (HTML)", 0.15), ("POST /api/trials/{id}/outcomes", 0.30)]
# the pairwise page in four variants (outcome x measure x method): each is computed once, then served from the
# analysis cache until a write changes the data that analysis reads
ANALYSES = ["/analysis", "/analysis?measure=OR&method=DL", "/analysis?outcome=complete+remission&timepoint=earliest",
            "/analysis?treatment=TAC&control=MMF&measure=RD"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results_web.md")
    a = ap.parse_args()
    if not (1 <= a.requests <= 20000 and 1 <= a.clients <= 100):
        ap.error("--requests must be 1..20000 and --clients 1..100")

    tmp = Path(tempfile.mkdtemp(prefix="lnsynth-webload-"))
    db = tmp / "store.db"
    port = free_port()
    base = f"http://{HOST}:{port}"
    code = (f"from lnsynth.web import serve; serve({HOST!r}, {port}, {str(db)!r}, {TOKEN!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t0 = time.monotonic()
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 60:
                raise SystemExit(f"server did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            time.sleep(0.1)
        startup = time.monotonic() - t0
        trials = [(t["id"], [a["id"] for a in t["arms"]]) for t in httpx.get(f"{base}/api/trials").json()]

        def count_all() -> tuple[int, set]:
            ids: set = set()
            for tid, _ in trials:
                ids |= {o["id"] for o in httpx.get(f"{base}/api/trials/{tid}/outcomes", timeout=30).json()}
            return len(ids), ids

        n_before, _ = count_all()
        audit_before = len(httpx.get(f"{base}/api/audit", headers={"Authorization": f"Bearer {TOKEN}"}).json())

        rng = random.Random(a.seed)
        kinds = [k for k, _ in MIX]
        plan = rng.choices(kinds, weights=[w for _, w in MIX], k=a.requests)
        # warm-up (not timed): first page render imports the engines
        for k in kinds[:4]:
            httpx.get(base + {"GET /api/trials": "/api/trials", "GET /api/trials/{id}/outcomes":
                              f"/api/trials/{TRIAL}/outcomes", "GET /trials/{id} (HTML)": f"/trials/{TRIAL}",
                              "GET /healthz": "/healthz"}[k], timeout=30)
        cold: list[float] = []  # first computation of each analysis (engines, selection, forest plot)
        for u in ANALYSES:
            t = time.perf_counter()
            r = httpx.get(base + u, timeout=120)
            cold.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                raise SystemExit(f"warm-up {u}: HTTP {r.status_code}")
        lock = threading.Lock()
        idx = [0]
        lat: dict[str, list[float]] = {k: [] for k in kinds}
        errors: list[str] = []
        created: list[int] = []
        deadline = time.monotonic() + a.max_seconds

        def client(cid: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as c:
                while True:
                    with lock:
                        if idx[0] >= len(plan) or time.monotonic() > deadline:
                            return
                        i = idx[0]
                        idx[0] += 1
                    kind = plan[i]
                    tid, arms = trials[(i * 7 + cid) % len(trials)]
                    t = time.perf_counter()
                    try:
                        if kind == "POST /api/trials/{id}/outcomes":
                            n = 20 + i % 50
                            r = c.post(f"/api/trials/{tid}/outcomes", headers={"Authorization": f"Bearer {TOKEN}"},
                                       json={"arm": arms[i % len(arms)], "outcome": "complete remission",
                                             "events": i % n, "n": n, "timepoint_weeks": 26,
                                             "source": "peleg2020", "location": "load test",
                                             "quote": f"load test request {i} from client {cid}"})
                            ok = r.status_code == 201
                            if ok:
                                with lock:
                                    created.append(r.json()["id"])
                        elif kind == "GET /api/trials":
                            r = c.get("/api/trials")
                            ok = r.status_code == 200 and isinstance(r.json(), list)
                        elif kind == "GET /api/trials/{id}/outcomes":
                            r = c.get(f"/api/trials/{tid}/outcomes")
                            ok = r.status_code == 200
                        elif kind == "GET /analysis (HTML)":
                            r = c.get(ANALYSES[i % len(ANALYSES)])
                            ok = r.status_code == 200 and 'id="pooled"' in r.text
                        elif kind == "GET /trials/{id} (HTML)":
                            r = c.get(f"/trials/{tid}")
                            ok = r.status_code == 200
                        else:
                            r = c.get("/healthz")
                            ok = r.status_code == 200
                        dt_ms = (time.perf_counter() - t) * 1000
                        with lock:
                            lat[kind].append(dt_ms)
                            if not ok:
                                errors.append(f"{kind}: HTTP {r.status_code}")
                    except Exception as exc:  # counted, never hidden
                        with lock:
                            errors.append(f"{kind}: {type(exc).__name__}: {exc}")

        load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        t_start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(c,)) for c in range(a.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t_start

        n_after, stored = count_all()
        audit = httpx.get(f"{base}/api/audit", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
        lost = [i for i in created if i not in stored]
        audited = sum(1 for e in audit[audit_before:] if e["action"] == "create")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()

    done = sum(len(v) for v in lat.values())
    allv = [x for v in lat.values() for x in v]
    posts = len(lat["POST /api/trials/{id}/outcomes"])
    lines = [
        "# Web app load benchmark",
        "",
        f"Run {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `benchmarks/web_load.py` "
        f"on {platform.node() or 'host'} ({os.cpu_count()} CPUs visible, Python {platform.python_version()}, "
        f"{platform.system()}); 1-min load average at the start: {load_avg:.1f} (other jobs were running).",
        "",
        f"Server: `lnsynth.web.serve` (uvicorn, one worker process) on 127.0.0.1, fresh SQLite store (WAL), "
        f"started in {startup:.1f} s. Clients: {a.clients} threads, one keep-alive `httpx.Client` each, "
        f"{a.requests} requests in a fixed random mix (seed {a.seed}); server and clients share the machine.",
        "",
        f"**{done} requests in {wall:.1f} s ({done / wall:.0f} req/s); errors: {len(errors)}** "
        f"(any exception or unexpected status counts; target 0).",
        "",
        "| request | count | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k in kinds + ["all"]:
        v = allv if k == "all" else lat[k]
        name = f"**{k}**" if k == "all" else f"`{k}`"
        lines.append(f"| {name} | {len(v)} | {pct(v, 50):.1f} | {pct(v, 95):.1f} | {pct(v, 99):.1f} | "
                     f"{max(v) if v else float('nan'):.1f} |")
    lines += [
        "",
        f"Analysis pages: {len(ANALYSES)} variants ({', '.join(f'`{u}`' for u in ANALYSES)}); their first "
        f"computation before the timed run (cold, one client): {', '.join(f'{x:.0f}' for x in cold)} ms. "
        "The POSTs are new values entered by one curator: under the two-person rule they stay out of the analyses "
        "until a second curator verifies them, so they do not change the data any analysis reads and the cached "
        "results stay valid (a write that does reach an analysis recomputes only the analyses of its endpoint; "
        "`tests/test_web_hardening.py::test_analysis_cache_invalidates_only_what_a_write_touches`).",
        "",
        "Integrity after the run: "
        f"{posts} POSTs sent, {len(created)} answered 201, {len(created) - len(lost)} of them present in "
        f"`GET /api/trials/{{id}}/outcomes` (lost: {len(lost)}), {audited} `create` entries added to the audit log; "
        f"live outcomes across the {len(trials)} trials went from {n_before} to {n_after}.",
        "",
    ]
    if errors:
        lines += ["Errors (first 20):", ""] + [f"- {e}" for e in errors[:20]] + [""]
    lines += [
        "Notes: latencies are client-side wall times (request sent to body read) under full concurrency, so they",
        "include queueing behind other clients; each POST is one `BEGIN IMMEDIATE` transaction (insert + audit",
        "row + generation bump) committed with `synchronous=FULL` (an fsync per commit, so an acknowledged write",
        "survives a power cut), serialised by SQLite's write lock; the POST tail is that queue. The JSON/HTML GETs",
        "read the WAL without blocking. Reproduce: `.venv/bin/python benchmarks/web_load.py`.",
        "",
    ]
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if not errors and not lost and audited == len(created) else 1


if __name__ == "__main__":
    sys.exit(main())
