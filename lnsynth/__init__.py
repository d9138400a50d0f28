"""lnsynth: evidence on calcineurin inhibitors in lupus nephritis.

lnsynth summarises published evidence and simulates hypotheses; it does not
prescribe. Nothing it prints is treatment advice.
"""

__version__ = "0.1.0"  # the one version string: pyproject.toml reads it (dynamic), as do the CLI, report and web app

DISCLAIMER = (
    "lnsynth summarises published evidence and simulates hypotheses; it does not "
    "prescribe. Its output is not medical advice."
)


def __getattr__(name):  # lazy: `import lnsynth` stays light
    if name in ("read_table", "DataError"):
        from lnsynth import io as _io

        return getattr(_io, name)
    raise AttributeError(f"module 'lnsynth' has no attribute {name!r}")
