"""The curation rule of the web store, applied before any analysis.

A count a curator enters through the app for an arm, endpoint and timepoint that already has a
record supersedes the older record (a correction replaces, never adds to, the stored count).
Records of the package data that come from different documents are left alone: choosing among
them is the shared selection rule (:func:`lnsynth.analyses.selection.one_record_per_arm`).
"""

from __future__ import annotations

from lnsynth.evidence.load import EvidenceBase

APP_PREFIX = "web_"


def _key(o) -> tuple:
    return (o.arm, o.endpoint, o.timepoint.weeks if o.timepoint is not None else None)


def superseded(ev: EvidenceBase) -> tuple[EvidenceBase, tuple[tuple[str, str], ...]]:
    """``ev`` without the records that app-entered records supersede, and a note per record dropped.

    Returns ``ev`` itself (same object) when nothing is superseded, so analyses cached on it are reused.
    """
    notes: list[tuple[str, str]] = []
    studies = []
    changed = False
    for s in ev.studies:
        outs = list(s.outcomes)
        newest: dict[tuple, int] = {}
        for i, o in enumerate(outs):
            if o.id.startswith(APP_PREFIX):
                newest[_key(o)] = i
        if not newest:
            studies.append(s)
            continue
        keep = []
        for i, o in enumerate(outs):
            j = newest.get(_key(o))
            if j is not None and i < j:
                notes.append((s.id, f"older duplicate entry {o.id} for arm {o.arm} at the same timepoint ignored "
                                    f"(newest entry {outs[j].id} used)"))
                continue
            keep.append(o)
        if len(keep) != len(outs):
            changed = True
            studies.append(s.model_copy(update={"outcomes": keep}))
        else:
            studies.append(s)
    if not changed:
        return ev, ()
    return EvidenceBase(ev.sources, tuple(studies), ev.syntheses, ev.root), tuple(notes)
