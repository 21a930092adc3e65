"""The sweep file: ``SweepSpec.from_yaml(path)``.

Structure and types are checked by pydantic, meaning (names in registries, ranges, metrics the
trainable reports, dataset files present) by :meth:`SweepSpec.check`; every error is one
line that names the field path and, where there is a list, the allowed values.
"""

from __future__ import annotations

import os
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raytune_hpo.space import CategoricalParam, SearchSpace

QUICKSTART = "quickstart.yaml"


class SpecError(ValueError):
    """A sweep file that cannot run; the message is one line naming the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Named(BaseModel):
    """``{name: ..., <options>}``: options are the extra keys, checked against the registry."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SearcherSpec(_Named):
    name: str = "random"


class SchedulerSpec(_Named):
    name: str = "fifo"


class DataSpec(_Strict):
    root: str | None = None
    download: bool = False
    image_size: int | None = Field(default=None, ge=4, le=1024)
    n_samples: int = Field(default=1000, ge=10)
    num_classes: int = Field(default=5, ge=2)
    channels: int = Field(default=3, ge=1, le=4)


class TrainableSpec(_Strict):
    """Fixed settings of the built-in ``train_cnn``; the space may tune any of them."""

    model: Literal["tinyvgg", "lenet5", "resnet", "mlp"] = "tinyvgg"
    dataset: Literal["digits", "synthetic", "cifar10", "mnist", "fashion_mnist", "imagefolder"] = (
        "digits"
    )
    data: DataSpec = DataSpec()
    epochs: int = Field(default=10, ge=1)
    k_folds: int = Field(default=1, ge=1, le=50)
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    augment: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    lr: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, ge=1)
    optimizer: Literal["adam", "sgd", "rmsprop"] | None = None
    momentum: float | None = Field(default=None, ge=0)
    weight_decay: float | None = Field(default=None, ge=0)
    dropout: float | None = Field(default=None, ge=0, lt=1)
    dropblock: float | None = Field(default=None, ge=0, lt=1)
    dropblock_size: int | None = Field(default=None, ge=1)
    hidden: list[int] | None = None
    c1: int | None = Field(default=None, ge=1)
    c3: int | None = Field(default=None, ge=1)
    c5: int | None = Field(default=None, ge=1)
    f6: int | None = Field(default=None, ge=1)
    width: int | None = Field(default=None, ge=1)
    blocks: int | None = Field(default=None, ge=1)

    def fixed_config(self) -> dict[str, Any]:
        cfg = self.model_dump(exclude_none=True, exclude={"data"})
        cfg["data"] = self.data.model_dump(exclude_defaults=True)
        return cfg


class ResourcesSpec(_Strict):
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)
    memory_gb: float | None = Field(default=None, gt=0)


# Space values that must come from a fixed list, with that list.
_CHOICES = {
    "model": TrainableSpec.model_fields["model"].annotation.__args__,  # type: ignore[union-attr]
    "optimizer": ("adam", "sgd", "rmsprop"),
    "augment": (True, False),
}


class SweepSpec(_Strict):
    name: str = Field(default="sweep", pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    metric: str = "val_accuracy"
    mode: Literal["min", "max"] = "max"
    space: dict[str, Any] = Field(default_factory=dict)
    searcher: SearcherSpec = SearcherSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    trainable: TrainableSpec = TrainableSpec()
    num_samples: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)
    resources: ResourcesSpec = ResourcesSpec()
    storage_path: str = "~/raytune-hpo-results"
    seed: int = 0
    max_failures: int = Field(default=0, ge=0)
    time_budget_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _pair_bohb(cls, data: Any) -> Any:
        """Searcher ``bohb`` with no scheduler given runs under ``HyperBandForBOHB``, as in the
        BOHB paper (one place decides the pairing: here)."""
        if isinstance(data, dict) and "scheduler" not in data:
            searcher = data.get("searcher")
            if isinstance(searcher, dict) and searcher.get("name") == "bohb":
                data = {**data, "scheduler": {"name": "bohb"}}
        return data

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], *, local_data: bool = True) -> SweepSpec:
        p = Path(path)
        if not p.is_file():
            raise SpecError(f"{path}: sweep file does not exist")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise SpecError(f"{path}: not valid YAML{where}") from None
        except UnicodeDecodeError:
            raise SpecError(f"{path}: not a text file") from None
        return cls.from_dict(data, source=str(path), local_data=local_data)

    @classmethod
    def quickstart(cls) -> SweepSpec:
        """The built-in quickstart sweep shipped inside the package."""
        text = resources.files("raytune_hpo").joinpath("specs", QUICKSTART).read_text()
        return cls.from_dict(yaml.safe_load(text), source=QUICKSTART)

    @classmethod
    def from_dict(
        cls, data: Any, *, source: str = "sweep", check: bool = True, local_data: bool = True
    ) -> SweepSpec:
        """``check=False``: a sweep over a test function (studies), not over ``train_cnn``:
        only the searcher and scheduler are checked. ``local_data=False``: the dataset files
        live on a cluster (``submit``), so their presence is not checked here."""
        if not isinstance(data, dict):
            raise SpecError(f"{source}: the sweep file must be a YAML mapping of fields")
        try:
            spec = cls.model_validate(data)
        except ValidationError as e:
            raise SpecError(f"{source}: {_first_error(e)}") from None
        try:
            spec.check(trainable=check, local_data=local_data)
        except ValueError as e:
            raise SpecError(f"{source}: {e}") from None
        return spec

    # ----------------------------------------------------------------- meaning
    @cached_property
    def search_space(self) -> SearchSpace:
        """The parsed ``space`` (parsed once; the spec is frozen)."""
        return SearchSpace.from_dict(self.space)

    @property
    def max_epochs(self) -> int:
        p = self.search_space.params.get(("epochs",))
        if p is None:
            return self.trainable.epochs
        values = p.choices if isinstance(p, CategoricalParam) else (p.high,)
        return int(max(values))

    @property
    def samples(self) -> int:
        """Trials to ask Tune for: ``num_samples`` (default 10). Grid search runs its grid
        once, whatever ``num_samples`` says, so switching a sweep to grid stays safe."""
        if self.searcher.name in _grid_searchers():
            return 1  # Tune's num_samples repeats the whole grid
        return self.num_samples or 10

    def check(self, *, trainable: bool = True, local_data: bool = True) -> None:
        """Raise ValueError naming the field for anything that would fail once Ray is up."""
        space = self.search_space
        if trainable:
            self._check_trainable(space, local_data)
        for section in ("searcher", "scheduler"):
            try:
                self._build(section)
            except ValueError as e:
                msg = str(e)
                sep = ": " if msg.startswith("unknown") else "."
                raise ValueError(f"{section}{sep}{msg}") from None
        if self.scheduler.name == "bohb" and self.searcher.name != "bohb":
            raise ValueError(
                f"scheduler.name: 'bohb' (HyperBandForBOHB) works with searcher 'bohb' only, "
                f"not {self.searcher.name!r}; allowed schedulers for it: "
                "fifo, asha, median, hyperband"
            )
        if self.searcher.name in _grid_searchers():
            space.to_tune(grid=True)  # raises naming a parameter that has no grid values

    def _check_trainable(self, space: SearchSpace, local_data: bool) -> None:
        from raytune_hpo.train.data import dataset_problem
        from raytune_hpo.train.trainable import BASE_METRICS, KFOLD_METRICS

        tunable = [k for k in TrainableSpec.model_fields if k not in ("data",)] + ["seed"]
        for key in self.space:
            if key not in tunable:
                allowed = ", ".join(tunable)
                raise ValueError(f"space.{key}: not a setting of the trainable; allowed: {allowed}")
        for path, param in space.params.items():
            allowed = _CHOICES.get(path[0])
            if allowed is not None:
                if not isinstance(param, CategoricalParam):
                    raise ValueError(f"space.{path[0]}: must be a categorical over {list(allowed)}")
                bad = [c for c in param.choices if c not in allowed]
                if bad:
                    raise ValueError(
                        f"space.{path[0]}.choices: {bad} not allowed; allowed: {list(allowed)}"
                    )
        k_folds = self.trainable.k_folds
        metrics = BASE_METRICS + (
            KFOLD_METRICS if k_folds > 1 or ("k_folds",) in space.params else ()
        )
        if self.metric not in metrics:
            raise ValueError(
                f"metric: {self.metric!r} is not reported by the trainable; "
                f"allowed: {', '.join(metrics)}"
            )
        d = self.trainable.data
        problem = dataset_problem(self.trainable.dataset, d.root, d.download or not local_data)
        if problem:
            raise ValueError(f"trainable.data.root: {problem}")
        if self.resources.gpu > 1 and self.resources.gpu != int(self.resources.gpu):
            raise ValueError("resources.gpu: fractions are allowed below 1 only (0.25, 0.5, 2)")

    def warnings(self) -> list[str]:
        """Legal but surprising combinations, one line each (the CLI prints them)."""
        from raytune_hpo.searchers import owns_space

        out = []
        sched, srch = self.scheduler.name, self.searcher.name
        if srch == "bohb" and sched != "bohb":
            out.append(
                f"searcher bohb under scheduler {sched}: BOHB's model learns from each trial's "
                "final result at the epoch where it stopped, not from HyperBand's synchronous "
                "brackets as in Falkner et al. (2018); scheduler bohb is the paper's setup"
            )
        elif sched in ("asha", "median", "hyperband") and owns_space(srch):
            out.append(
                f"searcher {srch} under scheduler {sched}: trials stopped early report their "
                "last epoch's value, so the searcher compares results of different budgets"
            )
        return out

    def param_space(self) -> dict[str, Any]:
        """The Tuner's ``param_space``: fixed trainable settings plus, for Ray's own
        searchers, the searched ones as Tune domains (our searchers carry the space)."""
        from raytune_hpo.searchers import owns_space

        fixed = {**self.trainable.fixed_config(), "seed": self.seed}
        if owns_space(self.searcher.name):
            return fixed
        grid = self.searcher.name in _grid_searchers()
        return {**fixed, **self.search_space.to_tune(grid=grid)}

    def _build(self, section: str):
        """The searcher or scheduler this spec names (metric and mode come from the Tuner)."""
        if section == "scheduler":
            from raytune_hpo.schedulers import create_scheduler

            return create_scheduler(
                self.scheduler.name, max_t=self.max_epochs, **self.scheduler.options
            )
        from raytune_hpo._registry import lookup
        from raytune_hpo.searchers import SEARCHERS, create_searcher

        options = dict(self.searcher.options)
        if "budget" in lookup("searcher", SEARCHERS, self.searcher.name).option_names():
            options.setdefault("budget", self.samples)  # LHS / RSA: the sweep's trials
        return create_searcher(
            self.searcher.name, space=self.search_space, seed=self.seed, **options
        )

    def build_searcher(self):
        return self._build("searcher")

    def build_scheduler(self):
        return self._build("scheduler")

    def experiment_dir(self, name: str) -> str:
        storage = self.resolved_storage()
        return f"{storage.rstrip('/')}/{name}"

    def resolved_storage(self) -> str:
        """Absolute local path, or a URI (s3://, gs://) left as it is."""
        if "://" in self.storage_path:
            return self.storage_path
        return str(Path(self.storage_path).expanduser().resolve())


def _grid_searchers() -> frozenset[str]:
    from raytune_hpo.searchers import GRID_SEARCHERS

    return GRID_SEARCHERS


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "sweep"
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(err["loc"][:-1])
        return f"{loc}: unknown field; allowed: {', '.join(allowed)}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: Any = SweepSpec
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))
