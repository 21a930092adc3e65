"""The half shared by our wrappers around library searchers (HpBandSter's BOHB, Optuna).

A library sees flat parameters under their library names (unique whatever characters the
parameters' own names hold: ``SearchSpace.library_names``), categoricals as the index of the
choice (so any object can be a choice): ``SearchSpace.to_library`` / ``from_library`` map
them. The rest of the contract is ``SearcherContract``, shared with ``UnitCubeSearcher``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raytune_hpo.searchers._contract import SearcherContract


class LibraryAdapter(SearcherContract):
    """Mixin for ``Searcher`` subclasses that drive a library in flat, encoded parameters; the
    library's model is built by ``_maybe_setup`` once what it needs is known."""

    def _maybe_setup(self) -> None:
        """Build the library's model if it is not built and can be (space, mode...)."""

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        adopted = self._merge_properties(metric, mode, config)
        self._maybe_setup()
        return adopted

    def _ready(self) -> None:
        """Before a suggestion: the space, metric and mode are known, the model built."""
        self._require_space()
        self._require_metric_mode("suggest")
        self._maybe_setup()

    def _encoded_points(self) -> list[dict[str, Any]]:
        return [self._space.to_library(p) for p in self._user_points]

    def _decoded(self, trial_id: str, flat: Mapping[str, Any]) -> dict[str, Any]:
        """The library's suggestion as our configuration, tracked as a live trial."""
        config = self._space.from_library(flat)
        self._track(trial_id, self._space.to_unit(config))
        return config


__all__ = ["LibraryAdapter"]
