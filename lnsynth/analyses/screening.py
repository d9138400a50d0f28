"""The PRISMA 2020 flow with its living update: the records imported since the systematic search
(``lnsynth records import``) and their two-person screening in the web app (issue 22, item 2).

:func:`prisma_update` turns the store's screening counts
(:meth:`lnsynth.web.store.Store.screening_counts`) into the boxes of a PRISMA 2020 *update* flow;
:func:`prisma_with_update` returns the computed flow of the search log (exactly the keys of
``lnsynth prisma --format json``) plus that block under the extra key ``update``.  The web app serves
it at ``GET /api/screening/prisma``; the command ``lnsynth prisma`` is unchanged.

Duplicates found at import are not stored by ``records import`` (they appear only in its output), so
``duplicates_at_import`` is ``None`` here: the update counts start at the records queued.
"""

from __future__ import annotations

from typing import Any, Optional


def prisma_update(counts: dict[str, Any]) -> dict[str, Any]:
    """The PRISMA update block from the store's screening counts.

    Parameters
    ----------
    counts : dict
        :meth:`~lnsynth.web.store.Store.screening_counts`.

    Returns
    -------
    dict
        ``identified`` (records queued by import), ``duplicates_at_import`` (``None``: not stored),
        ``screened`` (title/abstract settled), ``excluded_screening`` and its ``excluded_screening_reasons``,
        ``sought`` (included at title/abstract), ``assessed`` (full text settled), ``excluded_full`` (by
        reason), ``included`` and ``awaiting`` (records still open per stage and state).  Settled means
        two agreeing reviewers or a third curator's resolution.
    """
    return {
        "identified": int(counts["identified"]),
        "duplicates_at_import": None,
        "screened": int(counts["screened"]),
        "excluded_screening": int(counts["excluded_screening"]),
        "excluded_screening_reasons": dict(counts["excluded_screening_reasons"]),
        "sought": int(counts["sought"]),
        "assessed": int(counts["assessed"]),
        "excluded_full": dict(counts["excluded_full"]),
        "included": int(counts["included"]),
        "awaiting": {k: dict(v) for k, v in counts["awaiting"].items()},
    }


def prisma_with_update(store: Any, data: Optional[Any] = None) -> dict[str, Any]:
    """The computed PRISMA flow (contract keys of ``lnsynth prisma --format json``) plus ``update``.

    Parameters
    ----------
    store : lnsynth.web.store.Store
        The store whose screening decisions make the update.
    data : lnsynth.evidence.search.SearchData, optional
        The search log (default: the embedded one).
    """
    from lnsynth.evidence.search import prisma

    return {**prisma(data).contract(), "update": prisma_update(store.screening_counts())}
