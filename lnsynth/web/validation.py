"""Validation of outcome records typed in through the API or the HTML form.

Hand-written rather than a pydantic model so that every error names the field in the
contract's words (``events``, ``n``, ``arm`` ...), no input ever reaches a 5xx, and
the same rules serve JSON (typed values) and forms (strings converted first).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterable, Optional

from lnsynth.evidence.schema import ENDPOINTS

FIELDS = ("arm", "outcome", "events", "n", "timepoint_weeks", "source", "location", "quote")
MAX_COUNT = 1_000_000  # larger than any trial; bigger numbers are typos or attacks
MAX_WEEKS = 1040.0  # 20 years
MAX_LEN = {"arm": 64, "outcome": 100, "source": 200, "location": 200, "quote": 2000}
_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT = re.compile(r"[+-]?[0-9]{1,20}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})")
MAX_JSON_DIGITS = 30  # longer JSON integers are never parsed (Python refuses int() over 4,300 digits)


class TooManyDigits(str):
    """A JSON integer literal too long to be a count (kept as text, refused by the field's validation)."""

    def describe(self) -> str:
        return f"a number with {len(self.lstrip('-'))} digits"


def json_int(literal: str) -> "int | TooManyDigits":
    """``parse_int`` hook for :func:`json.loads`: bounded length before ``int()``."""
    if len(literal.lstrip("-")) > MAX_JSON_DIGITS:
        return TooManyDigits(literal)
    return int(literal)


def ascii_int(text: Any, lo: int, hi: int) -> Optional[int]:
    """``text`` as a whole number when it is ASCII digits (surrounding blanks allowed) within [lo, hi].

    Returns None for anything else -- Unicode digits, signs on unsigned input, 5,000-digit
    strings (the length is checked before ``int()``), out-of-range values.
    """
    if not isinstance(text, str):
        return None
    t = text.strip(" \t")
    if not _INT.fullmatch(t) or (lo >= 0 and t[0] in "+-"):
        return None
    n = int(t)
    return n if lo <= n <= hi else None


def ascii_number(text: Any) -> Optional[float]:
    """A plain decimal number (ASCII digits, optional sign and fraction; no exponent, inf or nan)."""
    if not isinstance(text, str):
        return None
    t = text.strip(" \t")
    return float(t) if _DECIMAL.fullmatch(t) else None


def has_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone UTF-16 surrogate (JSON ``"\\ud800"``): not storable as UTF-8."""
    return bool(_SURROGATE.search(text))


def json_errors(obj: Any, path: str = "body", limit: int = 20) -> list[dict]:
    """422 errors for a parsed JSON body, each naming its field: a string (key or value) holding a lone
    surrogate (SQLite stores UTF-8, which cannot encode it) or an integer literal with more than
    :data:`MAX_JSON_DIGITS` digits (see :func:`json_int`).  Checked for every route's JSON body, so no
    validator ever sees either."""
    out: list[dict] = []

    def walk(o: Any, where: str, depth: int) -> None:
        if len(out) >= limit or depth > 64:
            return
        if isinstance(o, TooManyDigits):
            field = where.rsplit(".", 1)[-1]
            out.append({"loc": where.split("."), "field": field,
                        "msg": f"{field} is too large ({o.describe()})", "type": "less_than_equal"})
        elif isinstance(o, str):
            if has_surrogate(o):
                field = where.rsplit(".", 1)[-1]
                out.append({"loc": where.split("."), "field": field,
                            "msg": f"{field} contains a lone surrogate (invalid Unicode text)", "type": "string_unicode"})
        elif isinstance(o, dict):
            for k, v in o.items():
                key = str(k)
                if has_surrogate(key):
                    out.append({"loc": [*where.split("."), "<key>"], "field": "body",
                                "msg": "a key contains a lone surrogate (invalid Unicode text)", "type": "string_unicode"})
                    continue
                walk(v, f"{where}.{key}", depth + 1)
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, f"{where}.{i}", depth + 1)

    walk(obj, path, 0)
    return out


surrogate_errors = json_errors  # the first name of this check


def _kind(v: Any) -> str:
    if isinstance(v, TooManyDigits):
        return v.describe()
    return "a boolean" if isinstance(v, bool) else type(v).__name__


def err(field: str, msg: str, typ: str) -> dict:
    return {"loc": ["body", field], "field": field, "msg": msg, "type": typ}


def _string(d: dict, name: str, errors: list) -> Optional[str]:
    v = d[name]
    if not isinstance(v, str) or isinstance(v, TooManyDigits):
        errors.append(err(name, f"{name} must be a string, got {_kind(v)}", "string_type"))
        return None
    if has_surrogate(v):
        errors.append(err(name, f"{name} contains a lone surrogate (invalid Unicode text)", "string_unicode"))
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
    if isinstance(v, TooManyDigits):
        errors.append(err(name, f"{name} is too large ({v.describe()}; at most {MAX_COUNT})", "less_than_equal"))
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        errors.append(err(name, f"{name} must be a whole number, got {_kind(v)}", "int_type"))
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
    if isinstance(v, TooManyDigits):
        errors.append(err("timepoint_weeks", f"timepoint_weeks is too large ({v.describe()}; at most "
                          f"{MAX_WEEKS:g})", "less_than_equal"))
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        errors.append(err("timepoint_weeks", f"timepoint_weeks must be a number of weeks or null, got {_kind(v)}",
                          "float_type"))
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
    if isinstance(v, str) and not isinstance(v, TooManyDigits) and ascii_int(v, 0, 10 ** 12) is not None:
        v = ascii_int(v, 0, 10 ** 12)
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
            val_i = ascii_int(raw, -(10 ** 12), 10 ** 12)
            if val_i is None:
                errors.append(err(f, f"{f} must be a whole number (digits 0-9)", "int_parsing"))
                continue
            out[f] = val_i
        elif f == "timepoint_weeks":
            if raw in (None, ""):
                out[f] = None
                continue
            val = ascii_number(raw)
            if val is None:
                errors.append(err(f, "timepoint_weeks must be a number of weeks (digits 0-9, optional decimals)",
                                  "float_parsing"))
                continue
            out[f] = val
        else:
            if raw in (None, ""):
                continue
            out[f] = raw
    return out, errors


BODY_NOT_OBJECT = {"loc": ["body"], "field": "body", "msg": "expected a JSON object", "type": "model_type"}


def update_values(current: dict, body: Any, fields, validate: Callable, arms) -> tuple[Optional[int], dict, list]:
    """A PUT body (changed fields + the ``version`` read) merged over the ``current`` record and validated.

    Returns ``(version, values, errors)``; ``errors`` (422 details) is empty when the update may be written.
    ``validate(merged, arms) -> (values, errors)`` is the record's validator (outcome or adverse event).
    """
    if not isinstance(body, dict):
        return None, {}, [dict(BODY_NOT_OBJECT)]
    errors: list[dict] = []
    version = version_of(body["version"], errors) if "version" in body else None
    if "version" not in body:
        errors.append(err("version", "version is required (the version you read)", "missing"))
    merged = {f: current[f] for f in fields}
    merged.update({k: v for k, v in body.items() if k in fields})
    values, verrs = validate(merged, arms)
    return version, values, errors + verrs
