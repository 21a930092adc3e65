"""The built-in CNN trainable's contract: the metrics it reports, its budget (epochs), its data
check and the callable Tune runs (``train_cnn``, or ``train_fused`` for fused trials). Its
settings are ``raytune_hpo.sweep.sections.CNNSettings``."""

from __future__ import annotations

from typing import Any

from raytune_hpo.errors import UserError
from raytune_hpo.sweep.sections import (
    BASE_METRICS,
    FUSED_MAY_DIFFER,
    KFOLD_METRICS,
    MUTABLE,
    NOT_SEARCHED,
    CNNSettings,
    dataset_problem,
)
from raytune_hpo.sweep.space import CategoricalParam, SearchSpace
from raytune_hpo.train.contract import TrainableContract, check_space_against


class CNNTrainable(TrainableContract):
    """``train_cnn``: TinyVGG / LeNet5 / ResNet / MLP on an image dataset, one result per
    epoch (with the model's ``params_m`` and ``latency_ms``), checkpointed every epoch; a trial
    continued from another's checkpoint takes its config's ``MUTABLE`` settings."""

    def __init__(self, settings: CNNSettings) -> None:
        self.settings = settings  # the sweep's parsed section (SweepSpec.trainable_section)

    def fixed_config(self) -> dict[str, Any]:
        return self.settings.fixed_config()

    def check_space(self, space: SearchSpace) -> None:
        for path in space.params:
            if path[0] in NOT_SEARCHED:
                raise UserError(
                    "a fixed setting; set it under trainable:", field=("space", path[0])
                )
        check_space_against(CNNSettings, self.fixed_config(), space)

    def warnings(self, space: SearchSpace, *, max_concurrent: int | None = None) -> list[str]:
        fused = self.settings.fused
        if fused <= 1:
            return []
        out = []
        apart = sorted({p[0] for p in space.params} - set(FUSED_MAY_DIFFER))
        if apart:
            out.append(
                f"trainable.fused {fused}: trials that differ in {', '.join(apart)} cannot "
                "train in one group (only " + ", ".join(FUSED_MAY_DIFFER) + " may differ); "
                "they form groups of their own"
            )
        if (max_concurrent or fused) < fused:
            out.append(
                f"trainable.fused {fused} with max_concurrent {max_concurrent}: a group's "
                "members start together only if max_concurrent is at least fused"
            )
        return out

    def metrics(self, space: SearchSpace) -> tuple[str, ...]:
        kfold = self.settings.k_folds > 1 or ("k_folds",) in space.params
        return BASE_METRICS + (KFOLD_METRICS if kfold else ())

    def mutable_settings(self) -> tuple[str, ...]:
        return MUTABLE

    def max_budget(self, space: SearchSpace) -> int:
        p = space.params.get(("epochs",))
        if p is None:
            return self.settings.epochs
        values = p.choices if isinstance(p, CategoricalParam) else (p.high,)
        return int(max(values))

    def check_data(self, *, local: bool) -> None:
        d = self.settings.data
        problem = dataset_problem(self.settings.dataset, d.root, d.download or not local)
        if problem:
            raise UserError(problem, field=("trainable", "data", "root"))

    def function(self):
        if self.settings.fused > 1:
            from raytune_hpo.train.entry import train_fused

            return train_fused
        from raytune_hpo.train.entry import train_cnn

        return train_cnn

    def worker_loop(self):
        from raytune_hpo.train.entry import train_cnn_per_worker

        return train_cnn_per_worker

    @property
    def label(self) -> str:
        return f"train_cnn ({self.settings.model} on {self.settings.dataset})"


__all__ = ["CNNTrainable"]
