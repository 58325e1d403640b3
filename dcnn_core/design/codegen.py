"""Generate a standalone Keras script: the design and the whole experiment of the Train page.

The network is written from the same layer list (``plan.expand``) that the app builds its models
from; the training code mirrors the app's: the seeded validation split
(``lifecycle.split_train_validation``), the shuffled, augmented tf.data pipeline
(``pipeline.training_dataset``), the optimizer (``training_config.build_optimizer``), the schedule
(``training_config.scheduled_rate``), class weights (``pipeline.balanced_class_weights``) and early
stopping that restores the weights of the epoch with the best validation loss. A pretrained
backbone is written as ``backbones.attach`` builds it (resize, grey repeated to RGB, the
keras.applications network with its own preprocessing, frozen), followed by the job's two phases:
the head first, then the top N backbone layers fine-tuned at the lower rate.
"""

from __future__ import annotations

from dcnn_core import naming
from dcnn_core.design import backbones, plan
from dcnn_core.design.spec import Backbone, ModelSpec
from dcnn_core.training.config import TrainConfig, optimizer_arguments

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
    """``WEIGHTS``: the DCNN_WEIGHTS_DIR file when there is one, else Keras's own download (cached), or None for random."""
    title = backbones.info(backbone.name).title
    if backbone.weights != "imagenet":
        return f"WEIGHTS = None  # {title} initialised at random: not transfer learning"
    status = backbones.weights_status(backbone.name, allow_download=False)
    if status.source == "folder":
        return f"WEIGHTS = {status.path!r}  # {title}'s ImageNet weights (the server's {backbones.WEIGHTS_DIR_VARIABLE})"
    return f"WEIGHTS = 'imagenet'  # {title}'s ImageNet weights, downloaded once by Keras into ~/.keras/models"


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


def _optimizer_code(config: TrainConfig) -> str:
    """The call ``training_config.build_optimizer`` makes, as code."""
    name, arguments = optimizer_arguments(config)
    return f"keras.optimizers.{name}({', '.join(f'{key}={value!r}' for key, value in arguments.items())})"


def _split_code() -> list[str]:
    return [
        "def split_train_validation(x, y):",
        '    """The app\'s seeded split: the same images are held out to validate every epoch."""',
        "    order = np.random.default_rng(SEED).permutation(len(x))",
        "    cut = int(round(len(order) * (1 - VALIDATION_SPLIT))) if VALIDATION_SPLIT > 0 else len(order)",
        "    train, validation = np.sort(order[:cut]), np.sort(order[cut:])",
        "    return x[train], y[train], x[validation], y[validation]",
    ]


def _augmentation_code(config: TrainConfig) -> list[str]:
    """Keras preprocessing layers, as ``pipeline.augmentation_layers`` makes them (same seeds)."""
    augmentation = config.augmentation
    steps = []
    if augmentation.flip:
        steps.append("layers.RandomFlip('horizontal', seed=SEED)")
    if augmentation.rotation > 0:
        steps.append(f"layers.RandomRotation({augmentation.rotation!r}, fill_mode='constant', seed=SEED + 1)")
    if augmentation.zoom > 0:
        steps.append(f"layers.RandomZoom({augmentation.zoom!r}, fill_mode='constant', seed=SEED + 2)")
    if augmentation.shift > 0:
        steps.append(f"layers.RandomTranslation({augmentation.shift!r}, {augmentation.shift!r}, fill_mode='constant', seed=SEED + 3)")
    if augmentation.contrast > 0:
        steps.append(f"layers.RandomContrast({augmentation.contrast!r}, value_range=(0, 255), seed=SEED + 4)")
    return [
        "def augmentation():",
        '    """Random changes to training images only, a fresh draw every epoch."""',
        "    return keras.Sequential([",
        *(f"        {step}," for step in steps),
        "    ], name='augmentation')",
    ]


def _pipeline_code(config: TrainConfig) -> list[str]:
    lines = [
        "def training_data(x, y):",
        '    """Shuffled (seeded, again every epoch), batched, augmented batches of uint8 images."""',
        "    data = tf.data.Dataset.from_tensor_slices((x, y.astype('int32')))",
        "    data = data.shuffle(len(x), seed=SEED, reshuffle_each_iteration=True).batch(BATCH_SIZE)",
    ]
    if config.augmentation.active:
        lines += [
            "    augment = augmentation()",
            "    data = data.map(lambda images, labels: (augment(tf.cast(images, 'float32'), training=True), labels))",
        ]
    return [*lines, "    return data.prefetch(2)"]


def _class_weights_code(num_classes: int) -> list[str]:
    return [
        f"def class_weights(labels, num_classes={num_classes}):",
        '    """Weights proportional to 1/frequency, averaging 1 over the images (absent classes get 1)."""',
        "    counts = np.bincount(labels, minlength=num_classes).astype(float)",
        "    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 1.0)",
        "    return {index: float(weight) for index, weight in enumerate(weights)}",
    ]


_SCHEDULED = ("step", "cosine")  # schedules written as a function of the epoch


def _schedule_code(config: TrainConfig) -> list[str]:
    """``training_config.scheduled_rate`` for the step and cosine schedules, as code (epochs counted in a phase)."""
    if config.schedule == "step":
        body = f"    return base_rate * {config.step_factor!r} ** (epoch // {config.step_every})"
    else:
        body = "    return base_rate * 0.5 * (1 + math.cos(math.pi * min(epoch, epochs) / max(1, epochs)))"
    return [
        f"def learning_rate(epoch, base_rate={float(config.learning_rate)!r}, epochs=EPOCHS):",
        f'    """The {config.schedule} schedule: the rate of each epoch (0-based) of a training phase."""',
        body,
    ]


def _callbacks_code(config: TrainConfig) -> list[str]:
    callbacks = []
    signature = "def callbacks():"
    if config.schedule == "plateau":
        plateau = f"monitor='val_loss', factor={config.step_factor!r}, patience={config.patience}"
        callbacks.append(f"keras.callbacks.ReduceLROnPlateau({plateau})")
    elif config.schedule in _SCHEDULED:
        signature = f"def callbacks(first_epoch=0, base_rate={float(config.learning_rate)!r}, epochs=EPOCHS):"
        callbacks.append("keras.callbacks.LearningRateScheduler(lambda epoch, rate: learning_rate(epoch - first_epoch, base_rate, epochs))")
    if config.early_stopping:
        # Stops after `patience` epochs without a lower validation loss; restores the best epoch's weights.
        callbacks.append(f"keras.callbacks.EarlyStopping(monitor='val_loss', patience={config.patience}, restore_best_weights=True)")
    return [signature, "    return [", *(f"        {callback}," for callback in callbacks), "    ]"]


def _fit_code(config: TrainConfig, target: str, epochs: str, callbacks: str, initial_epoch: str | None = None) -> list[str]:
    return [
        f"    {target} = model.fit(",
        "        training_data(x_fit, y_fit),",
        f"        epochs={epochs},",
        *([f"        initial_epoch={initial_epoch},"] if initial_epoch else []),
        "        validation_data=(x_validation, y_validation) if len(x_validation) else None,",
        "        validation_batch_size=max(256, BATCH_SIZE),",
        f"        class_weight={'class_weights(y_fit)' if config.class_weights else 'None'},",
        f"        callbacks={callbacks},",
        "        shuffle=False,  # training_data shuffles, seeded",
        "        verbose=2,",
        "    )",
    ]


def _compile_code(config: TrainConfig) -> str:
    return f"    model.compile(optimizer={_optimizer_code(config)}, loss='sparse_categorical_crossentropy', metrics=['accuracy'])"


def _unfreeze_code(spec: ModelSpec, channels: int) -> list[str]:
    """``backbones.unfreeze_top`` for this design's layer names, as code."""
    names = [node.name for node in plan.expand(spec, 2, channels=channels)]
    before = max(names.index(name) for name in backbones.BEFORE_BACKBONE if name in names)
    head = next(name for name in backbones.HEAD_START if name in names)
    return [
        "def unfreeze_top(model, count):",
        '    """Phase 2: the top `count` backbone layers with weights become trainable; batch norm stays frozen (inference mode)."""',
        "    names = [layer.name for layer in model.layers]",
        f"    backbone = model.layers[names.index({names[before]!r}) + 1 : names.index({head!r})]",
        f"    tunable = [layer for layer in backbone if layer.weights and type(layer).__name__ not in {backbones.NEVER_UNFROZEN!r}]",
        "    for layer in tunable[len(tunable) - count :]:",
        "        layer.trainable = True",
    ]


def _fine_tune_code(spec: ModelSpec, config: TrainConfig) -> list[str]:
    """Phase 2 inside ``train``: unfreeze the top layers, compile at the lower rate, fit on from where phase 1 ended."""
    phase2 = backbones.fine_tune_config(config, spec.backbone)
    scheduled = config.schedule in _SCHEDULED
    callbacks = f"callbacks(first_epoch, {float(phase2.learning_rate)!r}, FINE_TUNE_EPOCHS)" if scheduled else "callbacks()"
    return [
        "    # Phase 2: fine-tune the top backbone layers at the lower rate (Keras fixes what it trains at compile time).",
        "    unfreeze_top(model, FINE_TUNE_LAYERS)",
        _compile_code(phase2),
        "    first_epoch = len(history.epoch)  # phase 1 may have stopped early: phase 2 still gets all its epochs",
        *_fit_code(config, "phase2", "first_epoch + FINE_TUNE_EPOCHS", callbacks, "first_epoch"),
        "    for key, values in phase2.history.items():",
        "        history.history[key] = history.history.get(key, []) + values",
        "    history.epoch += phase2.epoch",
    ]


def _training_code(spec: ModelSpec, config: TrainConfig, num_classes: int, channels: int) -> list[str]:
    """Functions for the split, the data pipeline, class weights, the schedule and callbacks, then ``train``."""
    fine_tunes = backbones.fine_tunes(spec)
    parts = [_split_code()]
    if config.augmentation.active:
        parts.append(_augmentation_code(config))
    parts.append(_pipeline_code(config))
    if config.class_weights:
        parts.append(_class_weights_code(num_classes))
    if config.schedule in _SCHEDULED:
        parts.append(_schedule_code(config))
    parts.append(_callbacks_code(config))
    if fine_tunes:
        parts.append(_unfreeze_code(spec, channels))
    parts.append(
        [
            "def train(x_train, y_train):",
            '    """Build, compile and fit as DCNN Studio does; returns the model and its history."""',
            "    keras.utils.set_random_seed(SEED)  # the initial weights and dropout follow the seed",
            "    model = build_model()",
            _compile_code(config),
            "    x_fit, y_fit, x_validation, y_validation = split_train_validation(x_train, y_train)",
            *(["    # Phase 1: the pretrained backbone frozen, the head trains."] if spec.backbone is not None else []),
            *_fit_code(config, "history", "EPOCHS", "callbacks()"),
            *(_fine_tune_code(spec, config) if fine_tunes else []),
            "    return model, history",
        ]
    )
    lines: list[str] = []
    for part in parts:
        lines += [*part, "", ""]
    return lines[:-2]


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
        *_training_code(spec, config, num_classes, input_shape[-1]),
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
