"""Analysis pages: the pairwise explorer, the network and the simulator.

Thin presentation: every number comes from the shared selection of the analysis layer
(:mod:`lnsynth.web.analysis` calls :func:`lnsynth.analyses.selection.pairwise_data` and
:func:`lnsynth.analyses.network_data.arm_level_data`) on the store's evidence.
"""

from __future__ import annotations

from typing import Callable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .. import analysis as an


def make_router(store, page: Callable) -> APIRouter:
    router = APIRouter()

    cache: dict = {"gen": None, "frame": None}

    def outcome_frame():
        """Arm-level outcomes of the store (for the form's endpoint list), cached per write."""
        gen = store.generation()
        if cache["gen"] != gen:
            cache.update(gen=gen, frame=store.evidence().outcomes_frame())
        return cache["frame"]

    @router.get("/analysis", response_class=HTMLResponse, include_in_schema=False)
    def analysis_page(request: Request):
        frame = outcome_frame()
        qp = request.query_params
        q = {"outcome": qp.get("outcome", "complete remission"), "treatment": qp.get("treatment", "CNI-any"),
             "control": qp.get("control", "non-CNI"), "measure": qp.get("measure", "RR"),
             "method": qp.get("method", "REML"), "timepoint": qp.get("timepoint", "latest")}
        run = an.run_pairwise(store.evidence(), q["outcome"], q["treatment"], q["control"], q["measure"], q["method"],
                              q["timepoint"])
        eps = sorted(set(frame["endpoint"])) if len(frame) else []
        return page(request, "analysis.html", {"q": q, "run": run, "endpoints": eps,
                                               "choices": an.regimen_choices(), "measures": an.PAIRWISE_MEASURES,
                                               "methods": an.PAIRWISE_METHODS, "title": "Pairwise analysis"})

    @router.get("/network", response_class=HTMLResponse, include_in_schema=False)
    def network_page(request: Request):
        frame = outcome_frame()
        qp = request.query_params
        q = {"outcome": qp.get("outcome", "complete remission"), "measure": qp.get("measure", "OR"),
             "method": qp.get("method", "REML"), "node": qp.get("node", "class")}
        if q["node"] not in ("class", "regimen"):
            q["node"] = "class"
        run = an.run_network(store.evidence(), q["outcome"], q["measure"], q["method"], q["node"])
        eps = sorted(set(frame["endpoint"])) if len(frame) else []
        return page(request, "network.html", {"q": q, "run": run, "endpoints": eps,
                                              "measures": an.NETWORK_MEASURES, "methods": an.NETWORK_METHODS,
                                              "title": "Network meta-analysis"})

    @router.get("/simulator", response_class=HTMLResponse, include_in_schema=False)
    def simulator_page(request: Request):
        sim, why = an.simulator()
        qp = request.query_params
        values = {"protocol": qp.get("protocol", ""), "n": qp.get("n", "500"), "seed": qp.get("seed", "1")}
        errors: dict[str, str] = {}
        protocols: list[tuple[str, str]] = []
        result, error = None, None
        if sim is not None:
            try:
                protocols = [(k, p.label) for k, p in sim.load_protocols().items() if getattr(p, "arms", None)]
            except (OSError, ValueError) as exc:  # the simulator's own loading problem (files, schema), shown as such
                sim, why = None, f"protocols could not be loaded ({type(exc).__name__}: {exc})"
        if sim is not None and qp.get("run"):
            ids = [k for k, _ in protocols]
            if values["protocol"] not in ids:
                errors["protocol"] = "choose one of the protocols"
            n_s, seed_s = values["n"].strip(), values["seed"].strip()
            if not n_s.isdigit() or not 1 <= int(n_s) <= an.SIM_MAX_N:
                errors["n"] = f"virtual patients per arm must be a whole number from 1 to {an.SIM_MAX_N}"
            if not seed_s.isdigit() or len(seed_s) > 10 or int(seed_s) > 2 ** 31 - 1:
                errors["seed"] = "seed must be a whole number from 0 to 2147483647"
            if not errors:
                try:
                    result = an.run_simulation(sim, values["protocol"], int(n_s), int(seed_s))
                except ValueError as exc:  # the simulator's own message for a bad protocol/input; bugs are logged 500s
                    error = str(exc)
        return page(request, "simulator.html", {"available": sim is not None, "why": why, "protocols": protocols,
                                                "values": values, "errors": errors, "result": result,
                                                "error": error, "max_n": an.SIM_MAX_N, "title": "Simulator"},
                    status=400 if errors else 200)

    return router
