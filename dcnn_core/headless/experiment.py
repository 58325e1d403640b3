"""An experiment file: data set, network, training settings and where to train, as one JSON document.

The app exports it; ``python -m dcnn_core.headless.train experiment.json`` trains it headless, on a GPU box or
across workers. Reading one checks every field and names the first bad one, e.g.
``config.batch_size: The batch size must be from 1 to 4096.``
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from dcnn_core.data import datasets
from dcnn_core.data.datasets import DatasetChoice
from dcnn_core.design import typed_dict
from dcnn_core.design.spec import ModelSpec, parse_json
from dcnn_core.headless.distribute import STRATEGIES
from dcnn_core.training.config import TrainConfig

FORMAT = "dcnn-studio-experiment"
VERSION = 1
_SECTIONS = ("format", "version", "dataset", "spec", "config", "distribution")


@dataclass
class Distribution:
    """Where to train; the batch size in the config is the global batch, split across replicas."""

    strategy: str = "auto"  # auto: several workers (TF_CONFIG) > several GPUs > the default strategy
    mixed_precision: bool = False  # float16 compute on a GPU (ignored, with a note, without one)


@dataclass
class Experiment:
    """Everything needed to train one run again, anywhere."""

    dataset: DatasetChoice
    spec: ModelSpec
    config: TrainConfig  # includes the seed
    distribution: Distribution = field(default_factory=Distribution)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "dataset": {"key": self.dataset.key, "options": dict(self.dataset.options)},
            "spec": self.spec.to_dict(),
            "config": self.config.to_dict(),
            "distribution": {"strategy": self.distribution.strategy, "mixed_precision": self.distribution.mixed_precision},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> Experiment:
        """Check and build; raises ValueError starting with the bad field's path."""
        if not isinstance(data, dict):
            raise ValueError("An experiment must be a JSON object.")
        unknown = sorted(map(str, set(data) - set(_SECTIONS)))
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown section (an experiment has {', '.join(_SECTIONS)}).")
        if data.get("format") != FORMAT:
            raise ValueError(f"format: must be {FORMAT!r} (got {data.get('format')!r}); is this a DCNN Studio experiment?")
        if data.get("version") != VERSION:
            raise ValueError(f"version: this DCNN Studio reads version {VERSION} (got {data.get('version')!r}).")
        for section in ("dataset", "spec", "config"):
            if section not in data:
                raise ValueError(f"{section}: missing.")
        return cls(
            dataset=_dataset_choice(data["dataset"]),
            spec=_checked("spec", data["spec"], ModelSpec.from_dict),
            config=_checked("config", data["config"], TrainConfig.from_dict),
            distribution=_distribution(data.get("distribution", {})),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Experiment:
        return cls.from_dict(parse_json(text))


def _checked(section: str, data, build: Callable):
    """``build(data)``, with any ValueError prefixed by the path of the field that caused it."""
    try:
        return build(data)
    except typed_dict.FieldError as error:
        path = error.path
        message = str(error)
    except ValueError as error:
        path = typed_dict.failing_path(build, data)
        message = str(error)
    raise ValueError(f"{section}{'.' + path if path else ''}: {message}") from None


def _dataset_choice(data) -> DatasetChoice:
    if not isinstance(data, dict):
        raise ValueError('dataset: must be a JSON object like {"key": "shapes", "options": {}}.')
    unknown = sorted(map(str, set(data) - {"key", "options", "title"}))  # a run's dataset reference also carries a title
    if unknown:
        raise ValueError(f"dataset.{unknown[0]}: unknown field (a data set has key and options).")
    key, options = data.get("key"), data.get("options", {})
    if key == datasets.CUSTOM_KEY:
        raise ValueError("dataset.key: your own uploaded images live only in the app; export an experiment on a registry data set.")
    if key not in datasets.REGISTRY:
        raise ValueError(f"dataset.key: unknown data set {key!r}; choose from {', '.join(datasets.REGISTRY)}.")
    if not isinstance(options, dict):
        raise ValueError("dataset.options: must be a JSON object of the loader's options.")
    parameters = inspect.signature(datasets.REGISTRY[key].loader).parameters
    for name, value in options.items():
        if name not in parameters:
            takes = ", ".join(parameters) or "no options"
            raise ValueError(f"dataset.options.{name}: unknown option for {key!r} (it takes {takes}).")
        default = parameters[name].default
        if not _same_kind(value, default):
            raise ValueError(f"dataset.options.{name}: must be {type(default).__name__} like the default {default!r} (got {value!r}).")
    return DatasetChoice(key=key, options=dict(options))


def _same_kind(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return default is inspect.Parameter.empty or isinstance(value, type(default))


def _distribution(data) -> Distribution:
    if not isinstance(data, dict):
        raise ValueError('distribution: must be a JSON object like {"strategy": "auto", "mixed_precision": false}.')
    unknown = sorted(map(str, set(data) - {"strategy", "mixed_precision"}))
    if unknown:
        raise ValueError(f"distribution.{unknown[0]}: unknown field (it has strategy and mixed_precision).")
    strategy, mixed = data.get("strategy", "auto"), data.get("mixed_precision", False)
    if strategy not in STRATEGIES:
        raise ValueError(f"distribution.strategy: must be one of {', '.join(STRATEGIES)} (got {strategy!r}).")
    if not isinstance(mixed, bool):
        raise ValueError(f"distribution.mixed_precision: must be true or false (got {mixed!r}).")
    return Distribution(strategy=strategy, mixed_precision=mixed)


def create(spec: ModelSpec, dataset_choice: DatasetChoice, config: TrainConfig, strategy: str = "auto",
           mixed_precision: bool = False) -> Experiment:  # fmt: skip
    """An experiment from what the app's pages hold; checked like a file that is read."""
    choice = DatasetChoice(dataset_choice.key, dict(dataset_choice.options))  # the title is the app's, not the experiment's
    draft = Experiment(choice, spec, config, Distribution(strategy, mixed_precision))
    return Experiment.from_dict(draft.to_dict())
