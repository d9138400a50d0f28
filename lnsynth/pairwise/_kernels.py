"""Which build of the pairwise kernels runs a fit: compiled (numba) or interpreted.

The kernels in :mod:`lnsynth.pairwise.core` are plain Python written in the subset numba
compiles.  Compiling them takes several seconds once per install, and even loading them from
numba's cache costs about 0.8 s per process (importing numba and setting up its target
context) -- far more than a single analysis needs: a REML fit of k = 13 studies takes about
1 ms interpreted.  So a process that fits a handful of analyses (``lnsynth meta``, a report
page) runs the *same source* interpreted, and only batches large enough to repay the start-up
(``COMPILED_FROM`` fits or more), or a process that has already imported numba, use the
compiled build.

The interpreted build is made by executing ``core.py``'s source with numba's ``njit`` and
``prange`` replaced by the identity and ``range``; no second copy of the algorithm exists, and
the two builds give the same numbers (IEEE arithmetic in both: numba is not asked for
fast-math; ``tests/test_startup.py`` checks them against each other on random batches).

``LNSYNTH_JIT=1`` forces the compiled build, ``LNSYNTH_JIT=0`` the interpreted one.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

COMPILED_FROM = 256  # fits per call from which the compiled kernels repay their start-up
_NUMBA_IMPORT = "from numba import njit, prange"
_interpreted: types.ModuleType | None = None


def _identity_njit(*args, **kwargs):
    if args and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


def interpreted() -> types.ModuleType:
    """``core.py`` executed without numba (built once per process)."""
    global _interpreted
    if _interpreted is None:
        path = Path(__file__).with_name("core.py")
        src = path.read_text(encoding="utf-8")
        if _NUMBA_IMPORT not in src:  # pragma: no cover - guards a refactor of core.py
            raise RuntimeError(f"{path}: expected the line {_NUMBA_IMPORT!r}")
        mod = types.ModuleType("lnsynth.pairwise._core_interpreted")
        mod.__file__ = str(path)
        mod.__package__ = __package__
        mod.__dict__["_njit"] = _identity_njit
        code = compile(src.replace(_NUMBA_IMPORT, "njit, prange = _njit, range"), str(path), "exec")
        exec(code, mod.__dict__)
        _interpreted = mod
    return _interpreted


def compiled() -> types.ModuleType:
    from . import core

    return core


def kernels(n_fits: int) -> types.ModuleType:
    """The kernel module to use for a call fitting ``n_fits`` analyses."""
    forced = os.environ.get("LNSYNTH_JIT", "").strip()
    if forced == "1":
        return compiled()
    if forced == "0":
        return interpreted()
    if n_fits >= COMPILED_FROM or "numba" in sys.modules:
        return compiled()
    return interpreted()
