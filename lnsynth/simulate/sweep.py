"""Fan simulations out with Dask (``distributed``), or run them serially.

``map_tasks(func, items, scheduler=None)`` is the one primitive: ``scheduler=None`` runs serially in this
process; ``"local"`` starts ``distributed.LocalCluster(n_workers=2, processes=True)``; any other string is
the address of an existing scheduler. Tasks are pure functions of their inputs (seeded, common random
numbers), so Dask and serial runs give identical results.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable

import pandas as pd


def map_tasks(func: Callable, items: Iterable, scheduler: str | None = None, progress=None,
              n_workers: int = 2) -> list:
    items = list(items)
    if scheduler is None:
        out = []
        for it in items:
            out.append(func(it))
            if progress is not None:
                progress()
        return out
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futs = client.map(func, items, pure=False)
        index = {f.key: i for i, f in enumerate(futs)}
        res: list[Any] = [None] * len(items)
        for f in as_completed(futs):
            res[index[f.key]] = f.result()
            if progress is not None:
                progress()
        return res
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _sweep_task(args):
    from .core import run_protocol

    protocol, point, n, seed = args
    r = run_protocol(protocol, params=point, n=n, seed=seed)
    return [
        {**point, "arm": a, "endpoint": e, "value": v[0], "n_included": v[2]} for (a, e), v in sorted(r.items())
    ]


def sweep(grid: dict[str, list[float]] | None = None, protocol: str = "regimens", n: int = 2000, seed: int = 0,
          scheduler: str | None = "local", progress=None) -> pd.DataFrame:
    """Simulate ``protocol`` at every point of the parameter ``grid`` (cartesian product).

    Returns one row per (grid point, arm, endpoint). ``scheduler``: None (serial), "local" (2-worker
    LocalCluster) or a scheduler address.
    """
    if grid is None:
        grid = {"k_cni": [1.0, 3.0, 6.0], "f_nonimmune": [0.0, 0.3, 0.6]}
    names = list(grid)
    points = [dict(zip(names, map(float, vals))) for vals in itertools.product(*(grid[k] for k in names))]
    rows = map_tasks(_sweep_task, [(protocol, pt, n, seed) for pt in points], scheduler=scheduler,
                     progress=progress)
    return pd.DataFrame([r for chunk in rows for r in chunk])
