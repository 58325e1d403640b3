"""One reader for typed settings: every refusal names the field's path."""

from dataclasses import dataclass, field

import pytest

from dcnn_core.data.datasets import DatasetChoice
from dcnn_core.design import typed_dict
from dcnn_core.design.spec import ConvBlock, ModelSpec
from dcnn_core.headless import experiment
from dcnn_core.training.config import TrainConfig


@dataclass
class Inner:
    size: int = 3
    rate: float = 0.5


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=list)
    optional: Inner | None = None


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ([1], "", "A outer must be a JSON object."),
        ({"colour": 1}, "colour", "Unknown field(s) in outer: colour."),
        ({"inner": {"size": 1, "shape": 2}}, "inner.shape", "Unknown field(s) in inner: shape."),
        ({"items": [{}, {"sise": 1}]}, "items[1].sise", "Unknown field(s) in item 2: sise."),
        ({"items": [{}, 7]}, "items[1]", "'items[1]' must be a JSON object."),
        ({"items": "many"}, "items", "'items' must be a list (got 'many')."),
        ({"inner": {"size": "3"}}, "inner.size", "'inner.size' must be a whole number (got '3')."),
        ({"inner": {"size": True}}, "inner.size", "'inner.size' must be a whole number (got True)."),
        ({"name": 5}, "name", "'name' must be text (got 5)."),
        ({"optional": {"rate": None}}, "optional.rate", "'optional.rate' must be a number (got None)."),
    ],
)
def test_refusals_name_the_path(data, path, message):
    with pytest.raises(typed_dict.FieldError) as error:
        typed_dict.from_dict(Outer, data, title="outer")
    assert error.value.path == path
    assert str(error.value) == message


def test_nested_values_are_built_and_defaults_filled():
    built = typed_dict.from_dict(Outer, {"inner": {"rate": 1}, "items": [{"size": 4}], "optional": None})
    assert built == Outer(inner=Inner(rate=1.0), items=[Inner(size=4)], optional=None)
    assert isinstance(built.inner.rate, float)
    assert typed_dict.from_dict(Outer, {"optional": {}}).optional == Inner()


def test_failing_path_blames_the_field_that_breaks_validation():
    config = TrainConfig().to_dict() | {"early_stopping": True, "validation_split": 0.0}
    assert typed_dict.failing_path(TrainConfig.from_dict, config) == "early_stopping"  # wrong only together: the later one
    config = TrainConfig().to_dict()
    config["augmentation"]["zoom"] = 0.9
    assert typed_dict.failing_path(TrainConfig.from_dict, config) == "augmentation.zoom"
    design = ModelSpec(blocks=[]).to_dict() | {"blocks": [{}, {"filters": 0}]}
    assert typed_dict.failing_path(ModelSpec.from_dict, design) == "blocks[1].filters"
    assert typed_dict.failing_path(ModelSpec.from_dict, design | {"blocks": [{}] * 13}) == "blocks"  # too many: the list
    assert typed_dict.failing_path(TrainConfig.from_dict, TrainConfig().to_dict()) == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda data: data["config"].update(epochs="10"), "config.epochs: 'epochs' must be a whole number (got '10')."),
        (lambda data: data["config"]["augmentation"].update(tilt=1), "config.augmentation.tilt: Unknown field(s) in augmentation: tilt."),
        (lambda data: data["spec"]["head"].update(dense_units=[64, "x"]), "spec.head.dense_units[1]: 'head.dense_units[1]' must be"),
        (lambda data: data["spec"].update(blocks=[{}] * 13), "spec.blocks: The number of blocks must be a whole number from 0 to 12"),
        (lambda data: data["spec"]["blocks"].append({"kind": "odd"}), "spec.blocks[1].kind: Block 2: kind must be one of"),
    ],
)
def test_experiment_files_name_the_path_of_the_bad_field(change, message):
    data = experiment.create(ModelSpec(name="t", blocks=[ConvBlock()]), DatasetChoice("shapes", {}), TrainConfig()).to_dict()
    change(data)
    with pytest.raises(ValueError) as error:
        experiment.Experiment.from_dict(data)
    assert str(error.value).startswith(message)


def test_the_app_readers_keep_their_messages():
    with pytest.raises(ValueError, match=r"^Unknown field\(s\) in training config: colour\.$"):
        TrainConfig.from_dict({"epochs": 3, "colour": 1})
    with pytest.raises(ValueError, match=r"^Unknown field\(s\) in block 1: colour\.$"):
        ModelSpec.from_dict({"blocks": [{"colour": 1}]})
    with pytest.raises(ValueError, match=r"^A model spec must be a JSON object\.$"):
        ModelSpec.from_dict([])
