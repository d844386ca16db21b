"""The paper's figures (Section V) and the PPO comparison, as importable, seeded runs.

One module per figure, each with a typed ``Args`` dataclass and
``main(argv=None, *, progress=None) -> dict`` (the summary record it writes); the shared
helpers are :mod:`agents.figures.common`. ``FIGURES`` is the registry that ``dtfl reproduce``
and the tests use; ``examples/figN_*.py`` are thin scripts over the same ``main``.

Modules are imported only when their figure runs (Fig. 7 and 8 import torch), so importing
this package is cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FIGURES", "FigureEntry", "figure_entry", "run_figure"]


@dataclass(frozen=True)
class FigureEntry:
    """One registered figure.

    ``key`` is what ``dtfl reproduce`` takes (``fig4``), ``name`` the output folder and file
    prefix (``fig4_latency_vs_q``: ``runs/<name>/<name>.png``), ``module`` the module whose
    ``main`` runs it and ``title`` a line for listings.
    """

    key: str
    name: str
    module: str
    title: str

    def load(self) -> Callable[..., dict[str, Any]]:
        """The figure's ``main(argv=None, *, progress=None)``, importing its module."""
        return importlib.import_module(self.module).main  # type: ignore[no-any-return]


FIGURES: dict[str, FigureEntry] = {
    e.key: e
    for e in (
        FigureEntry("fig3", "fig3_lambda", "agents.figures.fig3", "convergence of lambda"),
        FigureEntry("fig4", "fig4_latency_vs_q", "agents.figures.fig4", "latency against Q"),
        FigureEntry("fig5", "fig5_solver_time", "agents.figures.fig5", "computation time"),
        FigureEntry("fig6", "fig6_secrecy", "agents.figures.fig6", "secrecy throughput"),
        FigureEntry("fig7", "fig7_accuracy", "agents.figures.fig7", "global model accuracy"),
        FigureEntry("fig8", "fig8_malicious", "agents.figures.fig8", "malicious nodes"),
        FigureEntry("fig8b", "fig8b_validator", "agents.figures.fig8b", "validator selection"),
        FigureEntry("fig9", "fig9_block_size", "agents.figures.fig9", "block size"),
        FigureEntry("fig10", "fig10_ppo", "agents.figures.fig10", "PPO against Algorithm 2"),
    )
}


def figure_entry(key: str) -> FigureEntry:
    """The registered figure ``key``; an unknown key is a ``ValueError`` listing the known."""
    try:
        return FIGURES[key]
    except KeyError:
        raise ValueError(f"figure: unknown figure {key!r} (known: {', '.join(FIGURES)})") from None


def run_figure(
    key: str, argv: Sequence[str] = (), *, progress: bool | None = None
) -> dict[str, Any]:
    """Run figure ``key`` in this process with the script arguments ``argv`` (``--quick``,
    ``--out DIR``, ...) and return its summary record. ``progress``: the figure's own
    progress bars (``None``: on a terminal only, ``False``: never)."""
    return figure_entry(key).load()(list(argv), progress=progress)
