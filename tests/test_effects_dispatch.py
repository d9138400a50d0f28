"""effect_sizes dispatches through the registry: every escalc measure names a kernel of effects_kernels.

Issue 25, item 3: adding a measure is one registry entry plus its kernel (CONTRIBUTING.md, "A new effect measure").
"""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from lnsynth import effects, effects_kernels, registry

ROOT = Path(__file__).resolve().parents[1] / "lnsynth"


def test_every_escalc_measure_names_a_kernel_and_hr_none():
    for code in registry.escalc_measures():
        entry = registry.measure(code)
        assert entry.kernel in effects_kernels.KERNELS, code
        assert effects_kernels.KERNELS[entry.kernel] is getattr(effects_kernels, entry.kernel)
        assert entry.vtypes[0] == "LS" and len(set(entry.vtypes)) == len(entry.vtypes)
        assert entry.add_default in (0.0, 0.5)
    assert registry.measure("HR").kernel == ""
    # escalc's add = 0 default (AS, PAS, PFT) and the vtype lists now live in the registry
    assert {c for c in registry.escalc_measures() if registry.measure(c).add_default == 0.0} == {"AS", "PAS", "PFT"}
    assert registry.measure("SMD").vtypes == ("LS", "UB", "LS2", "AV")
    assert registry.measure("ROM").vtypes == ("LS", "HO", "AV", "AVHO")
    # every kernel is used by some measure (no dead kernels)
    assert set(effects_kernels.KERNELS) == {registry.measure(c).kernel for c in registry.escalc_measures()}


def test_effect_sizes_holds_no_branch_on_a_measure_code():
    """No `m == "XX"` / `m in (...)` test with a measure code selects the computation in effect_sizes."""
    tree = ast.parse(inspect.getsource(effects.effect_sizes))
    codes = set(registry.measure_codes())
    dispatch = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.IfExp)) and isinstance(node.test, ast.Compare):
            consts = {c.value for c in ast.walk(node.test) if isinstance(c, ast.Constant)}
            if consts & codes and isinstance(node, ast.If):
                dispatch.append(ast.unparse(node.test))
    assert dispatch == [], dispatch


def test_the_kernel_named_by_the_registry_is_the_one_called(monkeypatch):
    calls = []
    real = effects_kernels.KERNELS["correlation"]

    def spy(inp):
        calls.append(inp.measure)
        return real(inp)

    monkeypatch.setitem(effects_kernels.KERNELS, "correlation", spy)
    es = effects.effect_sizes("ZCOR", cor=[0.3, 0.5], n=[53, 103])
    assert calls == ["ZCOR"]
    assert [round(float(x), 4) for x in es.yi] == [0.3095, 0.5493]


def test_unknown_measure_error_is_unchanged():
    with pytest.raises(ValueError, match=r"unknown measure 'XYZ'; valid measures: RR, OR, RD, PETO, AS, MD"):
        effects.effect_sizes("XYZ")
    with pytest.raises(ValueError, match="vtype='UB' not available for measure ZCOR; valid: LS"):
        effects.effect_sizes("ZCOR", cor=[0.3], n=[20], vtype="UB")


def test_effects_kernels_imports_no_presentation_or_heavy_optional_code():
    """effects_kernels is an engine module (tests/test_architecture.py ENGINE_PATHS lists effects.py only)."""
    tree = ast.parse((ROOT / "effects_kernels.py").read_text(encoding="utf-8"))
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mods.add((node.module or "").split(".")[0] if node.level == 0 else "lnsynth")
    assert mods <= {"__future__", "dataclasses", "typing", "numpy", "scipy"}, mods
