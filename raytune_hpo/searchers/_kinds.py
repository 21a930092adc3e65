"""What kind of values a parameter takes, as our searchers treat it: whether two of its values
can be one configuration (``discrete``) and whether a categorical's choices have an order
(``ordered``: every choice a number). Names (optimizers, activations, NAS-Bench-201's
operations) are unordered: their place in the list means nothing to a move or a neighbour."""

from __future__ import annotations

from raytune_hpo.sweep.space import CategoricalParam, FloatParam, IntParam, Param, SearchSpace


def ordered(p: CategoricalParam) -> bool:
    """Whether a categorical's choices have an order: every choice a number (not a bool)."""
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p.choices)


def discrete(p: Param) -> bool:
    """Whether two values of a parameter can be one configuration (ints, categoricals,
    quantized floats)."""
    return isinstance(p, (IntParam, CategoricalParam)) or (
        isinstance(p, FloatParam) and p.q is not None
    )


def unordered_dims(space: SearchSpace) -> dict[int, int]:
    """Dimension -> number of choices of the space's unordered categoricals."""
    return {
        j: len(p.choices)
        for j, p in enumerate(space.params.values())
        if isinstance(p, CategoricalParam) and not ordered(p)
    }


__all__ = ["discrete", "ordered", "unordered_dims"]
