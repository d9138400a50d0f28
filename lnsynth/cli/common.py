"""What every command shares: consoles, output formats, the one output function, evidence loading, errors.

Only typer and the standard library are imported here (start-up): rich, pandas and the engines are
imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import typer


def Console(*args, **kwargs):  # noqa: N802 - rich's class, imported when first used (start-up)
    from rich.console import Console as _Console

    return _Console(*args, **kwargs)


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)


class _LazyConsole:
    """rich Console on stderr, created on first use: most commands never print through it."""

    def __init__(self, **kwargs):
        self._kwargs, self._console = kwargs, None

    def __getattr__(self, name):
        if self._console is None:
            self._console = Console(**self._kwargs)
        return getattr(self._console, name)


err = _LazyConsole(stderr=True)


class TableFormat(str, Enum):
    csv = "csv"
    md = "md"
    html = "html"


class DataFormat(str, Enum):
    csv = "csv"
    json = "json"


class ListFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class AnswerFormat(str, Enum):
    table = "table"
    md = "md"
    json = "json"
    csv = "csv"


class MdFormat(str, Enum):
    md = "md"
    csv = "csv"
    json = "json"


_LIST_FORMAT_HELP = ("table (the default on a terminal; a plain-text table when stdout is not a terminal), "
                     "csv (the default when piped or redirected) or json.")


def _list_format(fmt: Optional[ListFormat]) -> ListFormat:
    """--format not given: a rich table on a terminal, CSV when stdout is piped or redirected."""
    if fmt is not None:
        return fmt
    return ListFormat.table if sys.stdout.isatty() else ListFormat.csv


def _print_table(table, columns: list[str], rows: list[list[str]]) -> None:
    """A rich box table on a terminal; a plain-text table (tabulate) otherwise (``--format table`` piped)."""
    if sys.stdout.isatty():
        Console().print(table)
        return
    from tabulate import tabulate

    if table.title:
        sys.stdout.write(f"{table.title}\n\n")
    sys.stdout.write(tabulate(rows, headers=columns, tablefmt="simple", disable_numparse=True) + "\n")
    if table.caption:
        sys.stdout.write(f"\n{table.caption}\n")


@contextlib.contextmanager
def _warnings_to_stderr(category: type = Warning):
    """Record warnings raised in the block and print them to stderr afterwards (markup-escaped)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        yield
    for c in caught:
        err.print(f"[yellow]warning: {escape(str(c.message))}[/]", highlight=False)


def _load(data: Optional[Path]):
    from lnsynth.evidence import EvidenceError, load_evidence

    if data is not None and data.is_dir() and not any(data.rglob("*.yaml")):
        sys.stderr.write(f"lnsynth: error: --data {data}: no evidence YAML files in this folder (it needs studies/*.yaml "
                         "and sources.yaml as `lnsynth export` writes them); for your own table use "
                         "`lnsynth meta --input FILE`\n")
        raise typer.Exit(2)
    if data is not None and data.is_file():
        sys.stderr.write(f"lnsynth: error: --data {data}: is a file; --data takes an evidence folder (YAML); "
                         "for your own table use `lnsynth meta --input FILE`\n")
        raise typer.Exit(2)
    try:
        return load_evidence(data)
    except EvidenceError as exc:
        err.print(f"[bold red]evidence error[/]\n{escape(str(exc))}")
        raise typer.Exit(2)


DataOpt = typer.Option(None, "--data", help="Evidence directory (default: the embedded package data).")


def _user_error(msg: str) -> typer.Exit:
    """Print one line 'lnsynth: error: ...' to stderr; return the Exit(2) to raise."""
    sys.stderr.write("lnsynth: error: " + " ".join(str(msg).split()) + "\n")
    return typer.Exit(2)


@contextlib.contextmanager
def _plain_warnings():
    """Record warnings in the block; print each as one plain line on stderr afterwards."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for c in caught:
                sys.stderr.write("lnsynth: warning: " + " ".join(str(c.message).split()) + "\n")


def _out_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise _user_error(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _save_fig(fig, path, what: str) -> None:
    """Save ``fig`` to ``path`` (or to each of a list of paths: one figure, several formats) and close it."""
    from lnsynth.plots.style import save

    paths = save(fig, path, dpi=150)
    sys.stderr.write(f"lnsynth: {what} written to {', '.join(str(p) for p in paths)}\n")


_Out = Any  # a value, or a zero-argument callable computing it only when that format is chosen


def _value(x: _Out) -> Any:
    return x() if callable(x) else x


def emit(fmt: str, result: Any = None, *, json_: _Out = None, csv: _Out = None, text: _Out = None,
         ensure_ascii: bool = False, default: Optional[Callable[[Any], Any]] = None) -> None:
    """Write a command's one output to stdout in ``fmt`` (the output function every command shares).

    Parameters
    ----------
    fmt : str
        ``"json"``, ``"csv"``; anything else (``table``, ``md``) writes the text.
    result : object, optional
        A result following the protocol: ``to_dict()`` gives the JSON, ``to_frame()`` the CSV and
        ``to_markdown()`` the text, unless ``json_``, ``csv`` or ``text`` is given.
    json_, csv, text : object or callable, optional
        What to write (a callable is called only when its format is chosen). JSON: a pandas DataFrame is
        written as records (``to_json(orient="records", indent=2)``), anything else through
        ``json.dumps(indent=2)``. CSV: a DataFrame without its index, or a string as is. Text: a string as
        is; a callable may also print by itself and return None.
    ensure_ascii, default
        Passed to :func:`json.dumps` (each command keeps its own JSON contract).
    """
    if fmt == "json":
        obj = _value(json_ if json_ is not None else result.to_dict)
        if hasattr(obj, "to_json") and hasattr(obj, "columns"):
            sys.stdout.write(obj.to_json(orient="records", indent=2) + "\n")
        else:
            sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=ensure_ascii, default=default) + "\n")
    elif fmt == "csv":
        obj = _value(csv if csv is not None else result.to_frame)
        sys.stdout.write(obj if isinstance(obj, str) else obj.to_csv(index=False))
    else:
        obj = _value(text if text is not None else result.to_markdown)
        if obj is not None:
            sys.stdout.write(obj)
