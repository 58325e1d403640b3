"""Generate a standalone Keras script: the design and the whole experiment of the Train page.

The network is written from the same layer list (``plan.expand``) that the app builds its models
from; the training code mirrors the app's: the seeded validation split
(``lifecycle.split_train_validation``), the shuffled, augmented tf.data pipeline
(``pipeline.training_dataset``), the optimizer (``training_config.build_optimizer``), the schedule
(``training_config.scheduled_rate``), class weights (``pipeline.balanced_class_weights``) and early
stopping that restores the weights of the epoch with the best validation loss. A pretrained
backbone is written as ``backbones.attach`` builds it (resize, grey repeated to RGB, the
keras.applications network with its own preprocessing, frozen), followed by the job's two phases:
the head first, then the top N backbone layers fine-tuned at the lower rate. This module writes
the model, the data loader and the script around them; the training functions are written by
``codegen_training``.
"""

from __future__ import annotations

from dcnn_core import naming
from dcnn_core.design import backbones, codegen_training, plan
from dcnn_core.design.spec import Backbone, ModelSpec
from dcnn_core.training.config import TrainConfig

_KERAS_LOADERS = {"fashion_mnist": "fashion_mnist", "mnist": "mnist", "cifar10": "cifar10"}


def _layer_line(node: plan.LayerNode, variables: dict[str, str]) -> str:
    arguments = [f"{key}={value!r}" for key, value in node.config.items()]
    arguments.append(f"name={node.name!r}")
    call = f"layers.{node.class_name}({', '.join(arguments)})"
    if len(node.inputs) > 1:  # Add, Concatenate: a list of tensors
        inputs = "[" + ", ".join(variables[name] for name in node.inputs) + "]"
    else:
        inputs = variables[node.inputs[0]]
    return f"    {variables[node.name]} = {call}({inputs})"


def _backbone_lines(backbone: Backbone) -> list[str]:
    """The pretrained network as ``backbones.attach`` builds it: its own preprocessing inside, every layer frozen."""
    application = backbones.info(backbone.name).application
    return [
        f"    backbone = keras.applications.{application}(include_top=False, weights=WEIGHTS, input_tensor=x)",
        "    for layer in backbone.layers:  # frozen: phase 1 trains the head only",
        "        layer.trainable = False",
        "    x = backbone.output",
    ]


def _weights_line(backbone: Backbone) -> str:
    """``WEIGHTS``: Keras's own download (cached) — the script runs on its reader's machine, never the server's files — or None."""
    title = backbones.info(backbone.name).title
    if backbone.weights != "imagenet":
        return f"WEIGHTS = None  # {title} initialised at random: not transfer learning"
    return f"WEIGHTS = 'imagenet'  # {title}'s ImageNet weights, downloaded once by Keras (or the path of a local copy of its file)"


def _model_code(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int) -> list[str]:
    nodes = plan.expand(spec, num_classes, channels=input_shape[-1])
    variables = {node.name: "x" for node in nodes}
    variables["input"] = "inputs"
    # A residual block needs its input kept apart from the main path.
    for node in nodes:
        if node.class_name == "Add":
            block_input = next(n for n in nodes if n.name == node.inputs[1]).inputs[0]
            if block_input != "input":
                variables[block_input] = "block_input"
            variables[node.inputs[1]] = "shortcut"
    lines = [
        "def build_model():",
        f'    """{spec.name}: input {input_shape}, {num_classes} classes."""',
        f"    inputs = keras.Input(shape={tuple(input_shape)!r}, name='input')",
    ]
    for node in nodes[1:]:
        if node.class_name == "Backbone":
            lines += _backbone_lines(spec.backbone)
            continue
        if variables.get(node.name) == "block_input":
            lines.append(_layer_line(node, variables | {node.name: "x"}))
            lines.append("    block_input = x")
            continue
        lines.append(_layer_line(node, variables))
    lines.append(f"    return keras.Model(inputs, x, name={naming.slug(spec.name)!r})")
    return lines


def _data_code(dataset_key: str) -> list[str]:
    if dataset_key in _KERAS_LOADERS:
        return [
            "def load_data():",
            f"    (x_train, y_train), (x_test, y_test) = keras.datasets.{_KERAS_LOADERS[dataset_key]}.load_data()",
            "    if x_train.ndim == 3:  # grayscale: add the channel axis",
            "        x_train, x_test = x_train[..., None], x_test[..., None]",
            "    return x_train, y_train.reshape(-1), x_test, y_test.reshape(-1)",
        ]
    if dataset_key == "digits":
        return [
            "def load_data():",
            "    from sklearn.datasets import load_digits",
            "    from sklearn.model_selection import train_test_split",
            "",
            "    digits = load_digits()",
            "    images = np.rint(digits.images * (255 / 16)).astype('uint8')[..., None]",
            "    x_train, x_test, y_train, y_test = train_test_split(",
            "        images, digits.target, test_size=0.2, stratify=digits.target, random_state=0",
            "    )",
            "    return x_train, y_train, x_test, y_test",
        ]
    return [
        "def load_data(path='dataset.npz'):",
        '    """The data set as saved from DCNN Studio (Model page: "Download the data as .npz")."""',
        "    data = np.load(path)",
        "    return data['x_train'], data['y_train'], data['x_test'], data['y_test']",
    ]


def _backbone_doc(spec: ModelSpec) -> list[str]:
    if spec.backbone is None:
        return []
    title = backbones.info(spec.backbone.name).title
    if not backbones.fine_tunes(spec):
        return [f"Transfer learning: {title} stays frozen; only the head trains."]
    return [f"Transfer learning in two phases: the head with {title} frozen, then its top FINE_TUNE_LAYERS layers at a lower rate."]


def _backbone_constants(spec: ModelSpec) -> list[str]:
    if spec.backbone is None:
        return []
    lines = [_weights_line(spec.backbone)]
    if backbones.fine_tunes(spec):
        lines += [
            f"FINE_TUNE_LAYERS = {spec.backbone.fine_tune_layers}  # phase 2 trains the top backbone layers with weights",
            f"FINE_TUNE_EPOCHS = {spec.backbone.fine_tune_epochs}  # epochs of phase 2, after EPOCHS of phase 1",
        ]
    return lines


def generate_script(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int, dataset_key: str, config: TrainConfig) -> str:
    """A runnable Python script: build the model, load the data, train as the Train page would, evaluate."""
    imports = ["import math", ""] if config.schedule == "cosine" else []
    lines = [
        f'"""{spec.name} — generated by DCNN Studio.',
        "",
        "The same network and the whole experiment of the Train page: optimizer, learning rate and schedule,",
        "batch size, epochs, validation split, seed, early stopping, class weights and augmentation.",
        *_backbone_doc(spec),
        "Run: python this_file.py   (needs keras, tensorflow and numpy)",
        '"""',
        "",
        *imports,
        "import keras",
        "import numpy as np",
        "import tensorflow as tf",
        "from keras import layers",
        "",
        f"SEED = {config.seed}",
        f"BATCH_SIZE = {config.batch_size}",
        f"EPOCHS = {config.epochs}",
        f"VALIDATION_SPLIT = {config.validation_split!r}  # share of the training images held out to validate",
        *_backbone_constants(spec),
        "",
        "",
        *_model_code(spec, input_shape, num_classes),
        "",
        "",
        *_data_code(dataset_key),
        "",
        "",
        *codegen_training.training_code(spec, config, num_classes, input_shape[-1]),
        "",
        "",
        "def main():",
        "    x_train, y_train, x_test, y_test = load_data()",
        "    model, history = train(x_train, y_train)",
        "    model.summary()",
        "    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)",
        "    print(f'test accuracy {accuracy:.4f}, test loss {loss:.4f}')",
        "",
        "",
        'if __name__ == "__main__":',
        "    main()",
        "",
    ]
    return "\n".join(lines)
