"""Validation of outcome records typed in through the API or the HTML form.

Hand-written rather than a pydantic model so that every error names the field in the
contract's words (``events``, ``n``, ``arm`` ...), no input ever reaches a 5xx, and
the same rules serve JSON (typed values) and forms (strings converted first).
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Optional

from lnsynth.evidence.schema import ENDPOINTS

FIELDS = ("arm", "outcome", "events", "n", "timepoint_weeks", "source", "location", "quote")
MAX_COUNT = 1_000_000  # larger than any trial; bigger numbers are typos or attacks
MAX_WEEKS = 1040.0  # 20 years
MAX_LEN = {"arm": 64, "outcome": 100, "source": 200, "location": 200, "quote": 2000}
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def err(field: str, msg: str, typ: str) -> dict:
    return {"loc": ["body", field], "field": field, "msg": msg, "type": typ}


def _string(d: dict, name: str, errors: list) -> Optional[str]:
    v = d[name]
    if not isinstance(v, str):
        errors.append(err(name, f"{name} must be a string, got {type(v).__name__}", "string_type"))
        return None
    v = v.strip()
    if not v:
        errors.append(err(name, f"{name} must not be empty", "string_too_short"))
        return None
    if len(v) > MAX_LEN[name]:
        errors.append(err(name, f"{name} is too long ({len(v)} characters; at most {MAX_LEN[name]})",
                          "string_too_long"))
        return None
    if _CTRL.search(v):
        errors.append(err(name, f"{name} contains control characters", "string_pattern_mismatch"))
        return None
    return v


def _count(d: dict, name: str, lo: int, errors: list) -> Optional[int]:
    v = d[name]
    if isinstance(v, bool) or not isinstance(v, int):
        what = "a boolean" if isinstance(v, bool) else type(v).__name__
        errors.append(err(name, f"{name} must be a whole number, got {what}", "int_type"))
        return None
    if v < lo:
        errors.append(err(name, f"{name} must be >= {lo}, got {v}", "greater_than_equal"))
        return None
    if v > MAX_COUNT:
        errors.append(err(name, f"{name} is too large (at most {MAX_COUNT})", "less_than_equal"))
        return None
    return v


def _weeks(d: dict, errors: list) -> Optional[float]:
    v = d["timepoint_weeks"]
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        errors.append(err("timepoint_weeks", f"timepoint_weeks must be a number of weeks or null, got "
                          f"{'a boolean' if isinstance(v, bool) else type(v).__name__}", "float_type"))
        return None
    v = float(v) if not isinstance(v, int) or abs(v) <= 10 ** 15 else math.inf
    if not math.isfinite(v):
        errors.append(err("timepoint_weeks", "timepoint_weeks must be finite", "finite_number"))
        return None
    if not (0 < v <= MAX_WEEKS):
        errors.append(err("timepoint_weeks", f"timepoint_weeks must be > 0 and <= {MAX_WEEKS:g}, got {v:g}",
                          "less_than_equal" if v > 0 else "greater_than"))
        return None
    return v


def validate_outcome(data: Any, arms: Iterable[str]) -> tuple[dict, list[dict]]:
    """Check a complete outcome record; returns (clean values, errors).

    Every key of :data:`FIELDS` is required (``timepoint_weeks`` may be ``null``);
    unknown keys are ignored.  ``events`` <= ``n``; ``arm`` must be an arm of the
    trial; ``outcome`` must be a known endpoint (case, ``_``/``-`` and spacing are normalised).
    """
    if not isinstance(data, dict):
        return {}, [{"loc": ["body"], "field": "body", "msg": f"expected a JSON object, got "
                     f"{type(data).__name__ if data is not None else 'null'}", "type": "model_type"}]
    errors: list[dict] = []
    for f in FIELDS:
        if f not in data:
            errors.append(err(f, f"{f} is required", "missing"))
    present = {f for f in FIELDS if f in data}
    out: dict[str, Any] = {}
    for f in ("arm", "outcome", "source", "location", "quote"):
        if f in present:
            out[f] = _string(data, f, errors)
    for f, lo in (("events", 0), ("n", 1)):
        if f in present:
            out[f] = _count(data, f, lo, errors)
    if "timepoint_weeks" in present:
        out["timepoint_weeks"] = _weeks(data, errors)
    arms = list(arms)
    if out.get("arm") is not None and out["arm"] not in arms:
        errors.append(err("arm", f"unknown arm {out['arm']!r}; arms of this trial: {', '.join(arms)}", "unknown_arm"))
    if out.get("outcome") is not None:
        ep = " ".join(out["outcome"].replace("_", " ").replace("-", " ").lower().split())
        if ep not in ENDPOINTS:
            errors.append(err("outcome", f"unknown outcome {out['outcome']!r}; known: {', '.join(sorted(ENDPOINTS))}",
                              "unknown_outcome"))
        else:
            out["outcome"] = ep
    if out.get("events") is not None and out.get("n") is not None and out["events"] > out["n"]:
        errors.append(err("events", f"events ({out['events']}) must not exceed n ({out['n']})", "events_gt_n"))
    return out, errors


def version_of(v: Any, errors: list) -> Optional[int]:
    if isinstance(v, str) and re.fullmatch(r"\s*\d{1,12}\s*", v):
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        errors.append(err("version", "version must be a whole number (the record's current version)", "int_type"))
        return None
    if v < 1 or v > 10 ** 12:
        errors.append(err("version", f"version must be >= 1, got {v}", "greater_than_equal"))
        return None
    return v


def form_to_typed(form: dict[str, str]) -> tuple[dict, list[dict]]:
    """Convert HTML form strings to typed values (blank = missing; timepoint blank = null)."""
    out: dict[str, Any] = {}
    errors: list[dict] = []
    for f in FIELDS:
        raw = form.get(f)
        raw = raw.strip() if isinstance(raw, str) else raw
        if f in ("events", "n"):
            if raw in (None, ""):
                continue
            if not re.fullmatch(r"[+-]?\d{1,12}", raw):
                errors.append(err(f, f"{f} must be a whole number", "int_parsing"))
                continue
            out[f] = int(raw)
        elif f == "timepoint_weeks":
            if raw in (None, ""):
                out[f] = None
                continue
            try:
                val = float(raw)
            except ValueError:
                errors.append(err(f, "timepoint_weeks must be a number of weeks", "float_parsing"))
                continue
            out[f] = val
        else:
            if raw in (None, ""):
                continue
            out[f] = raw
    return out, errors
