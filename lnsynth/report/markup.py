"""HTML building blocks shared by the report's builder and its section modules.

:class:`Section` and :func:`figure_html` live here, not in :mod:`lnsynth.report.build`, so that the section
modules (``questions``, ``sections``, ``prisma``) never import the builder that imports them (no cycle).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Section", "figure_html"]


@dataclass
class Section:
    """One report section: anchor id, title, body HTML and the figures it embeds."""

    id: str
    title: str
    html: str
    figures: list[str] = field(default_factory=list)


def figure_html(fig: Any, alt: str, caption: str) -> str:
    """Embed a matplotlib figure as an inline SVG data URI with alt text."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (
        f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{html.escape(alt, quote=True)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )
