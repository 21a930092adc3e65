"""How trials ended when a time limit ended them, as ``raytune_hpo.run.watch`` records it in a sweep
directory (``trial_ends.json``): the results table and the report read it to show a trial
stopped by ``trial_timeout_s`` / ``stall_timeout_s`` as failed with its reason, and one cut off
by ``time_budget_s`` as ``CUT``, not as ``OK``. Imports no Ray."""

from __future__ import annotations

import json
from dataclasses import dataclass

import raytune_hpo.storage as storage
from raytune_hpo.errors import UserError
from raytune_hpo.names import TRIAL_ENDS

TIMEOUT, STALLED, CUT = "timeout", "stalled", "time_budget"


@dataclass(frozen=True)
class Ends:
    """What ``TrialWatch`` recorded in a sweep directory."""

    trials: dict[str, dict[str, str]]  # trial id -> {status, reason}
    stopped: str | None  # why the whole sweep was stopped (resources never appeared)

    def error(self) -> UserError | None:
        """The one line a sweep stopped for lack of resources ends with."""
        return None if self.stopped is None else UserError(self.stopped, field="pending_timeout_s")


def parse_ends(text: str) -> Ends:
    try:
        data = json.loads(text)
    except ValueError:  # cut off mid-write: nothing recorded
        data = {}
    data = data if isinstance(data, dict) else {}
    trials = data.get("trials")
    return Ends(trials if isinstance(trials, dict) else {}, data.get("stopped"))


def read_ends(exp: str) -> Ends:
    """What a sweep directory (local or a URI) recorded; empty when nothing was."""
    path = storage.join(exp, TRIAL_ENDS)
    try:
        return parse_ends(storage.read_text(path)) if storage.is_file(path) else Ends({}, None)
    except UserError:
        return Ends({}, None)


__all__ = ["CUT", "STALLED", "TIMEOUT", "Ends", "parse_ends", "read_ends"]
