"""The trainables: what a trial runs, and what a run must know of it before Ray starts.

- ``contract``: ``TrainableContract``, one interface for both kinds; ``contract_of(spec)``
  picks the sweep's: ``cnn`` (the built-in CNN, ``train_cnn``) or ``user`` (a user's own
  function or ``Trainable`` class). None of these import torch.
- The built-in CNN at run time (imported by Ray's workers): ``entry`` (what Tune is handed,
  without torch), ``trainable`` (``train_cnn``, ``fit``), ``models``, ``data``,
  ``optimizers``, ``checkpoint``, ``measure``, ``perf``, fused trials (``fused``,
  ``fused_optim``, ``fused_tune``) and data-parallel trials (``distributed``: the Tune
  function that runs a Ray Train ``TorchTrainer`` per trial, without torch; ``data_parallel``:
  the CNN on every rank).

May import: the shared modules and ``sweep``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raytune_hpo.sweep.spec import SweepSpec
    from raytune_hpo.train.contract import TrainableContract


def contract_of(spec: SweepSpec, trainable: Any = None) -> TrainableContract:
    """The sweep's trainable as a run sees it: ``trainable`` (a function or ``Trainable`` class
    given in Python, or a contract), the user's ``trainable.function`` (imported here), or the
    built-in CNN."""
    from raytune_hpo.sweep.sections import UserSection
    from raytune_hpo.train.cnn import CNNTrainable
    from raytune_hpo.train.contract import TrainableContract
    from raytune_hpo.train.user import UserTrainable

    if isinstance(trainable, TrainableContract):
        return trainable
    section = spec.trainable_section
    if trainable is not None:
        return UserTrainable.from_object(trainable, section)
    if isinstance(section, UserSection):
        return UserTrainable.from_section(section, base_dir=spec.base_dir)
    return CNNTrainable(section)


__all__ = ["contract_of"]
