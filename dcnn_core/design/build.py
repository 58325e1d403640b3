"""Build a Keras Functional model from a ModelSpec (imports Keras when called)."""

from __future__ import annotations

from dcnn_core.design import backbones, plan
from dcnn_core.design.spec import ModelSpec
from dcnn_core.runtime import import_keras


def build_model(
    spec: ModelSpec,
    input_shape: tuple[int, int, int],
    num_classes: int,
    max_parameters: int | None = None,
    float32_output: bool = False,
    weights_dir: str | None = None,
):
    """The Keras model for ``spec``; raises ``plan.DesignError`` naming the layer when it cannot work.

    A pretrained backbone comes frozen, its weights from ``weights_dir`` (default ``$DCNN_WEIGHTS_DIR``)
    or Keras's cache; ``backbones.WeightsUnavailable`` says when there are none.
    ``float32_output`` computes the softmax ('predictions') in float32: under a mixed-precision
    policy a float16 softmax loses the small probabilities the loss needs.
    """
    analysis = plan.analyse(spec, input_shape, num_classes, max_parameters)
    if not analysis.ok:
        raise plan.DesignError(analysis.error)
    keras = import_keras()
    tensors = {}
    for node in plan.expand(spec, num_classes, channels=input_shape[-1]):
        if node.class_name == "InputLayer":
            tensors[node.name] = keras.Input(shape=tuple(input_shape), name=node.name)
            continue
        if node.class_name == "Backbone":
            tensors[node.name] = backbones.attach(tensors[node.inputs[0]], spec.backbone, weights_dir)
            continue
        config = dict(node.config, dtype="float32") if float32_output and node.name == "predictions" else node.config
        layer = getattr(keras.layers, node.class_name)(name=node.name, **config)
        inputs = [tensors[name] for name in node.inputs]
        tensors[node.name] = layer(inputs if len(inputs) > 1 else inputs[0])
    return keras.Model(tensors["input"], tensors["predictions"], name=_model_name(spec.name))


def _model_name(title: str) -> str:
    cleaned = "".join(ch.lower() if ch.isalnum() else "_" for ch in title).strip("_")
    return cleaned or "model"
