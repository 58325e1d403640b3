"""The learned-features projection reads the layer that feeds the classifier."""

import pytest

from dcnn_core.design import build, spec
from dcnn_core.results import projection


@pytest.mark.parametrize(
    ("name", "feeding"), [("Article baseline", "dense1"), ("Simple CNN", "dense1_dropout"), ("ResNet-style mini", "global_pool")]
)
def test_penultimate_layer_is_the_one_feeding_the_classifier(name, feeding):
    model = build.build_model(spec.preset(name), (16, 16, 1), 6)
    layer = projection.penultimate_layer(model)
    assert layer.name == feeding
    assert layer.output is model.get_layer("predictions").input


def test_a_model_without_a_dense_classifier_is_refused():
    model = build.build_model(spec.preset("Simple CNN"), (16, 16, 1), 6)
    headless = type(model)(model.input, model.get_layer("dense1").input)
    with pytest.raises(ValueError, match="does not end in a Dense layer"):
        projection.penultimate_layer(headless)
