"""Specs, the analysis and the Keras builder agree with each other and with hand-written Keras."""

import pytest

from dcnn_core.design import plan, spec
from dcnn_core.design.build import build_model
from dcnn_core.runtime import import_keras

INPUT_SHAPES = [(8, 8, 1), (28, 28, 1), (32, 32, 3)]


@pytest.mark.parametrize("input_shape", INPUT_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(spec.PRESETS))
def test_every_preset_builds_or_is_refused_with_a_reason(name, input_shape):
    design = spec.preset(name)
    analysis = plan.analyse(design, input_shape, 10)
    if not analysis.ok:
        assert "leaves no pixels" in analysis.error and "Block" in analysis.error
        with pytest.raises(plan.DesignError):
            build_model(design, input_shape, 10)
        return
    model = build_model(design, input_shape, 10)
    assert model.count_params() == analysis.total_parameters
    assert tuple(model.output.shape) == (None, 10)
    by_name = {layer.name: layer for layer in model.layers}
    for info in analysis.layers:
        assert tuple(by_name[info.name].output.shape[1:]) == info.output_shape, info.name


def test_lenet_on_8x8_names_the_layer_that_fails():
    analysis = plan.analyse(spec.preset("LeNet-5"), (8, 8, 1), 10)
    assert analysis.error.startswith("Block 2, layer 'block2_conv1': a 5×5 kernel")


def test_article_baseline_matches_the_article_model():
    keras = import_keras()
    reference = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    ours = build_model(spec.preset("Article baseline"), (28, 28, 1), 10)
    assert ours.count_params() == reference.count_params() == 203_530


def test_vgg_mini_matches_a_hand_written_keras_model():
    keras = import_keras()
    layers = keras.layers

    def conv_bn(filters):
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.Activation("relu")]

    reference = keras.Sequential(
        [keras.Input((32, 32, 3)), layers.Rescaling(1 / 255)]
        + conv_bn(32) + conv_bn(32) + [layers.MaxPooling2D(), layers.Dropout(0.1)]
        + conv_bn(64) + conv_bn(64) + [layers.MaxPooling2D(), layers.Dropout(0.2)]
        + [layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.3), layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    ours = build_model(spec.preset("VGG-style mini"), (32, 32, 3), 10)
    assert ours.count_params() == reference.count_params()


def test_resnet_mini_has_a_skip_connection():
    model = build_model(spec.preset("ResNet-style mini"), (28, 28, 1), 10)
    adds = [layer for layer in model.layers if layer.__class__.__name__ == "Add"]
    assert len(adds) == 2
    parents = {node.operation.name for node in adds[0]._inbound_nodes[0].parent_nodes}
    assert parents == {"block2_conv2_bn", "block2_shortcut"}  # main path + the skip
    assert model.get_layer("block2_shortcut").kernel_size == (1, 1)


def test_spec_json_round_trips():
    for name in spec.PRESETS:
        design = spec.preset(name)
        assert spec.ModelSpec.from_json(design.to_json()) == design


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "not valid JSON"),
        ('{"blocks": [{"filters": 0}]}', "Block 1: filters must be a whole number from 1 to 1024"),
        ('{"blocks": [{"padding": "reflect"}]}', "Block 1: padding must be one of same, valid"),
        ('{"blocks": [{"colour": 1}]}', "Unknown field(s) in block 1: colour"),
        ('{"head": {"dense_units": [64, -1]}}', "Head: dense units must be a whole number"),
        ('{"blocks": "many"}', "'blocks' must be a list"),
    ],
)
def test_bad_spec_files_get_a_clear_message(text, message):
    with pytest.raises(ValueError) as error:
        spec.ModelSpec.from_json(text)
    assert message in str(error.value)


def test_too_many_parameters_is_refused_naming_the_biggest_layer():
    design = spec.ModelSpec(blocks=[], head=spec.Head(dense_units=[4096, 4096]))
    analysis = plan.analyse(design, (64, 64, 3), 10, max_parameters=5_000_000)
    assert not analysis.ok
    assert "above this server's limit of 5,000,000" in analysis.error
    assert "'dense1'" in analysis.error


def test_no_output_classes_is_refused():
    analysis = plan.analyse(spec.preset("Simple CNN"), (28, 28, 1), 1)
    assert "at least 2 classes" in analysis.error


def test_pooling_too_far_is_refused_before_training():
    design = spec.ModelSpec(blocks=[spec.ConvBlock(filters=8) for _ in range(4)])
    analysis = plan.analyse(design, (8, 8, 1), 10)
    assert analysis.error.startswith("Block 4, layer 'block4_pool': 2×2 pooling on a 1×1 input")


def test_separable_counts_match_keras():
    design = spec.preset("MobileNet-style mini")
    analysis = plan.analyse(design, (32, 32, 3), 10)
    model = build_model(design, (32, 32, 3), 10)
    layer = model.get_layer("block2_conv1")
    info = next(i for i in analysis.layers if i.name == "block2_conv1")
    assert layer.count_params() == info.parameters
    # depthwise 3×3×32 + pointwise 32×64 multiply-adds at 32×32 output
    assert info.mult_adds == 32 * 32 * (9 * 32 + 32 * 64)
