"""Command-line interface: ``lnsynth`` (also ``python -m lnsynth``).

lnsynth summarises published evidence and simulates hypotheses; it does not prescribe.

The commands live in modules by group (:mod:`.evidence`, :mod:`.answers`, :mod:`.pairwise`,
:mod:`.network`, :mod:`.simulate`, :mod:`.web`, :mod:`.living`); what they share (consoles, formats,
the output function :func:`.common.emit`, evidence loading, errors) is in :mod:`.common`. A new
top-level command is a function in its group's module plus one line in ``_COMMANDS`` below (the
order of that list is the order of ``lnsynth --help``); a new sub-command group is a ``typer.Typer``
in its module added in ``_GROUPS``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import typer

from lnsynth import DISCLAIMER, __version__
from lnsynth.cli import answers, evidence, living, network, pairwise, simulate, web

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=f"lnsynth {__version__}: evidence on calcineurin inhibitors in lupus nephritis. {DISCLAIMER}",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lnsynth {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """lnsynth: evidence on calcineurin inhibitors in lupus nephritis (and your own meta-analyses: meta/nma --input)."""


# (command name or None for the function's name, function), in the order of `lnsynth --help`
_COMMANDS: list[tuple[Optional[str], Callable[..., Any]]] = [
    (None, evidence.trials),
    (None, evidence.reconcile),
    (None, evidence.prisma),
    (None, answers.questions),
    (None, answers.answer),
    (None, evidence.validate),
    (None, evidence.table1),
    (None, evidence.table2),
    (None, evidence.provenance),
    (None, answers.report),
    (None, pairwise.meta),
    (None, network.nma),
    ("cinema", network.cinema_cmd),
    (None, answers.rederive),
    (None, answers.sensitivity),
    (None, web.serve),
    ("export", web.export_cmd),
    ("import", web.import_cmd),
    ("update", living.update_cmd),
    ("threshold", living.threshold_cmd),
]
_GROUPS = [
    ("simulate", simulate.simulate_app),
    ("users", web.users_app),
    ("records", living.records_app),
]
for _name, _fn in _COMMANDS:
    app.command(_name)(_fn)
for _name, _group in _GROUPS:
    app.add_typer(_group, name=_name)


def main() -> None:  # pragma: no cover - thin wrapper
    # headless figure rendering for the CLI, the report and the web server threads, chosen at the
    # entry point (never by a module at import); an explicit MPLBACKEND wins
    import os

    os.environ.setdefault("MPLBACKEND", "Agg")
    app()


__all__ = ["app", "main"]
