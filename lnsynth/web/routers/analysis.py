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
from ..validation import ascii_int


def make_router(store, page: Callable) -> APIRouter:
    router = APIRouter()

    # results keyed by the data each analysis reads: a write elsewhere keeps them (see AnalysisCache)
    results = an.AnalysisCache()

    @router.get("/analysis", response_class=HTMLResponse, include_in_schema=False)
    def analysis_page(request: Request):
        ev = store.evidence()
        qp = request.query_params
        q = {"outcome": qp.get("outcome", "complete remission"), "treatment": qp.get("treatment", "CNI-any"),
             "control": qp.get("control", "non-CNI"), "measure": qp.get("measure", "RR"),
             "method": qp.get("method", "REML"), "timepoint": qp.get("timepoint", "latest")}
        run = results.pairwise(ev, q["outcome"], q["treatment"], q["control"], q["measure"], q["method"],
                               q["timepoint"])
        eps = results.endpoints(ev)
        return page(request, "analysis.html", {"q": q, "run": run, "endpoints": eps,
                                               "choices": an.regimen_choices(), "measures": an.PAIRWISE_MEASURES,
                                               "methods": an.PAIRWISE_METHODS, "title": "Pairwise analysis"})

    @router.get("/network", response_class=HTMLResponse, include_in_schema=False)
    def network_page(request: Request):
        ev = store.evidence()
        qp = request.query_params
        q = {"outcome": qp.get("outcome", "complete remission"), "measure": qp.get("measure", "OR"),
             "method": qp.get("method", "REML"), "node": qp.get("node", "class")}
        if q["node"] not in ("class", "regimen"):
            q["node"] = "class"
        run = results.network(ev, q["outcome"], q["measure"], q["method"], q["node"])
        eps = results.endpoints(ev)
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
            # ASCII digits within bounds ("²".isdigit() is True; a 5,000-digit string never reaches int())
            n_v = ascii_int(values["n"], 1, an.SIM_MAX_N)
            seed_v = ascii_int(values["seed"], 0, 2 ** 31 - 1)
            if n_v is None:
                errors["n"] = f"virtual patients per arm must be a whole number from 1 to {an.SIM_MAX_N}"
            if seed_v is None:
                errors["seed"] = "seed must be a whole number from 0 to 2147483647"
            if not errors:
                try:
                    result = an.run_simulation(sim, values["protocol"], n_v, seed_v)
                except ValueError as exc:  # the simulator's own message for a bad protocol/input; bugs are logged 500s
                    error = str(exc)
        return page(request, "simulator.html", {"available": sim is not None, "why": why, "protocols": protocols,
                                                "values": values, "errors": errors, "result": result,
                                                "error": error, "max_n": an.SIM_MAX_N, "title": "Simulator"},
                    status=400 if errors else 200)

    return router
