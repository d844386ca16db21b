"""Helpers shared by the figures (``agents.figures``) and the example scripts: typed CLI
arguments, output folder, CSV/JSON records, matplotlib figures drawn without pyplot's global
state (Agg canvas) and progress bars shown on a terminal only.

Each figure module's ``main(argv)`` parses its arguments with :func:`parse_args`, writes into
:func:`prepare_out`'s folder and ends with :func:`finish`; ``dtfl reproduce`` and
``examples/figN_*.py`` call it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import platform
import sys
import time
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "Figure",
    "finish",
    "new_figure",
    "parse_args",
    "prepare_out",
    "progress_bar",
    "save_figure",
    "versions",
    "write_csv",
    "write_json",
]

T = TypeVar("T")


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def parse_args(cls: type, argv: Sequence[str] | None = None, description: str = "") -> Any:
    """Build an argparse CLI from the typed dataclass ``cls`` and parse ``argv``.

    Every field becomes ``--field-name`` (help from ``field(metadata={"help": ...})``):
    ``bool`` fields are switches, ``tuple[int, ...]`` / ``tuple[float, ...]`` take several
    values, ``X | None`` fields accept ``none``.
    """
    ap = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        tp, optional = _unwrap_optional(hints[f.name])
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()  # type: ignore[misc]
        helptext = f.metadata.get("help", " ")
        if tp is bool:
            ap.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=helptext,
            )
            continue
        if typing.get_origin(tp) is tuple:
            elem = typing.get_args(tp)[0]
            ap.add_argument(flag, dest=f.name, type=elem, nargs="+", default=default, help=helptext)
            continue

        def conv(text: str, _tp: Any = tp, _opt: bool = optional) -> Any:
            if _opt and text.strip().lower() == "none":
                return None
            return _bool(text) if _tp is bool else _tp(text)

        ap.add_argument(flag, dest=f.name, type=conv, default=default, help=helptext)
    ns = ap.parse_args(argv)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(ns).items()}
    return cls(**values)


def prepare_out(out: str | Path) -> Path:
    """Create the output folder (``runs/<figure>/`` by default) and return it."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cell(value: Any) -> Any:
    """CSV cell: floats at full precision, non-finite numbers as empty cells / ``inf``."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_csv(
    path: Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> Path:
    """Write ``rows`` (dicts) as CSV; NaN becomes an empty cell, infinity ``inf``."""
    rows = list(rows)
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns))
        w.writeheader()
        for row in rows:
            w.writerow({k: _cell(row.get(k, "")) for k in columns})
    return path


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def versions() -> dict[str, str]:
    """The versions of dtfl-gym, Python and the numerical libraries, for the summary record."""
    import matplotlib
    import scipy

    try:
        from dtfl_env import __version__ as dtfl_version
    except ImportError:  # pragma: no cover - the package is installed in the venv
        dtfl_version = "unknown"
    return {
        "dtfl_gym": dtfl_version,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
    }


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (non-finite numbers become ``null``)."""
    path.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")
    return path


def new_figure(
    ncols: int = 1, nrows: int = 1, *, width: float = 6.0, height: float = 4.2, **subplot_kw: Any
) -> tuple[Figure, np.ndarray]:
    """A figure with an Agg canvas (no pyplot) and a flat array of its axes."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes.ravel()


def save_figure(fig: Figure, path: Path, dpi: int = 150) -> Path:
    """Render ``fig`` with the Agg canvas and write it (PNG by the file suffix)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    return path


def progress_bar(
    iterable: Iterable[T], enabled: bool | None = None, *, desc: str, total: int | None = None
) -> Iterable[T]:
    """``iterable`` with a tqdm bar on stderr: ``enabled=None`` shows it only where stderr is
    a terminal (tqdm's ``disable=None``, so CI logs stay clean), ``False`` never, ``True``
    always. The bar disappears when the loop ends."""
    from tqdm import tqdm

    disable = None if enabled is None else not enabled
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=False, dynamic_ncols=True)


def finish(
    out: Path,
    figure: str,
    args: Any,
    summary: Mapping[str, Any],
    t0: float,
    files: Sequence[Path],
    *,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write ``<figure>_summary.json`` (config, versions, key numbers) and list the files.

    ``argv``: the arguments the figure was given (``None``: the script's, ``sys.argv[1:]``)."""
    record = {
        "figure": figure,
        "config": args,
        "versions": versions(),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "summary": summary,
        "wall_s": time.perf_counter() - t0,
    }
    path = write_json(out / f"{figure}_summary.json", record)
    print("wrote " + ", ".join(str(p) for p in [*files, path]))
    return _jsonable(record)
