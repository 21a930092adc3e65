"""The one pairing rule of BOHB's searcher and scheduler (Falkner, Klein & Hutter, ICML 2018).

BOHB is a model (``BOHBSearch``, HpBandSter's own, driven directly) learning from HyperBand's
brackets (``HyperBandForBOHB``). Searcher ``bohb`` with no scheduler named runs under scheduler
``bohb``, as in the paper; under ``asha``, ``median``, ``hyperband`` or ``fifo`` it runs with a
warning (its model then learns from each trial's final result at the budget it reached).
Scheduler ``bohb`` with another searcher cannot run: HyperBandForBOHB waits for the searcher
to fill its brackets.
"""

from __future__ import annotations

from raytune_hpo.errors import UserError

BOHB = "bohb"
DEFAULT_SCHEDULER = "fifo"


def pair(searcher: str, scheduler: str | None) -> tuple[str, list[str]]:
    """The scheduler a sweep runs under, and its warnings; ValueError for a pair that cannot
    run. ``scheduler`` None: the sweep file names none."""
    if scheduler is None:
        return (BOHB if searcher == BOHB else DEFAULT_SCHEDULER), []
    if scheduler == BOHB and searcher != BOHB:
        raise UserError(
            f"'bohb' (HyperBandForBOHB) works with searcher 'bohb' only, not {searcher!r}; "
            "allowed schedulers for it: fifo, asha, median, hyperband",
            field=("scheduler", "name"),
        )
    if searcher == BOHB and scheduler != BOHB:
        return scheduler, [
            f"searcher bohb under scheduler {scheduler}: BOHB's model learns from each trial's "
            "final result at the epoch where it stopped, not from HyperBand's synchronous "
            "brackets as in Falkner et al. (2018); scheduler bohb is the paper's setup"
        ]
    return scheduler, []


__all__ = ["BOHB", "pair"]
