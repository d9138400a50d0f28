"""Run a protocol: every arm with the same virtual patients (common random numbers)."""

from __future__ import annotations


from .endpoints import evaluate
from .engine import simulate_schedule
from .params import default_params
from .protocols import Protocol, build_schedule, load_protocols


def resolve(protocol) -> Protocol:
    return load_protocols()[protocol] if isinstance(protocol, str) else protocol


def run_protocol(
    protocol,
    params: dict | None = None,
    n: int = 1000,
    seed: int = 0,
    trial_shift: float = 0.0,
    channels=(True, True, True),
    arms: list[str] | None = None,
    endpoints: list[str] | None = None,
) -> dict[tuple[str, str], tuple[float, float, int]]:
    """Simulate all (or the given) arms and return {(arm, endpoint): (value, exposure, n_included)}."""
    prot = resolve(protocol)
    p = default_params() if params is None else {**default_params(), **params}
    out = {}
    for arm in prot.arms:
        if arms is not None and arm.arm not in arms:
            continue
        sched = build_schedule(arm, prot.weeks, p)
        res = simulate_schedule(sched, p, n, seed=seed, population=prot.population,
                                trial_shift=trial_shift + prot.sens_shift, channels=channels)
        for name, spec in prot.endpoints.items():
            if endpoints is not None and name not in endpoints:
                continue
            out[(arm.arm, name)] = evaluate(res, spec, prot, p)
    return out


def simulate_arm(protocol, arm: str, params: dict | None = None, n: int = 1000, seed: int = 0,
                 trial_shift: float = 0.0, channels=(True, True, True), full: bool = False, weeks: int | None = None):
    """Trajectories of one arm (engine.ArmResult)."""
    prot = resolve(protocol)
    p = default_params() if params is None else {**default_params(), **params}
    sched = build_schedule(prot.arm(arm), weeks or prot.weeks, p)
    return simulate_schedule(sched, p, n, seed=seed, population=prot.population,
                             trial_shift=trial_shift + prot.sens_shift, channels=channels, full=full)
