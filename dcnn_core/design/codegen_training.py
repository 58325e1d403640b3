"""The training half of the generated script: everything the Train page does, written as code.

``training_code`` writes the functions the script's ``train`` uses, each mirroring the app's
own: the seeded validation split, the augmentation layers and the shuffled tf.data pipeline,
class weights, the learning-rate schedule and callbacks (early stopping included), the
optimizer as ``training_config.build_optimizer`` makes it, and, for a pretrained backbone
that is fine-tuned, phase 2: unfreezing the top layers and fitting on at the lower rate.
``codegen`` puts them after the model and the data in the script.
"""

from __future__ import annotations

from dcnn_core.design import backbones, plan
from dcnn_core.design.spec import ModelSpec
from dcnn_core.training import budget
from dcnn_core.training.config import TrainConfig, optimizer_arguments


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


def _per_batch_budget(config: TrainConfig) -> bool:
    """A time budget with the cosine schedule: the rate is set per batch by ``TimeBudget``, not per epoch."""
    return config.budget_s is not None and config.schedule == "cosine"


def _budget_code(config: TrainConfig) -> list[str]:
    """``dcnn_core.training.budget.BudgetPlan`` as a Keras callback: time the first batches, count the epochs, decay to zero."""
    rate = float(config.learning_rate) if _per_batch_budget(config) else None
    return [
        "import math",
        "import time",
        "",
        f"BUDGET_S = {float(config.budget_s)!r}  # seconds of training (build and fit), as planned on the Train page",
        "",
        "",
        "class TimeBudget(keras.callbacks.Callback):",
        '    """Best in BUDGET_S: time the first batches, count the epochs that fit, stop when the time is up.',
        "",
        "    With a peak rate, the rate rises over the first half epoch, then decays by cosine to zero at the end",
        "    of the last epoch that fits; the plan is made again at every epoch's end from that epoch's time.",
        '    """',
        "",
        f"    def __init__(self, train_images, validation_images, peak_rate={rate!r}):",
        "        super().__init__()",
        "        self.started = time.perf_counter()",
        "        self.per_epoch = -(-train_images // BATCH_SIZE)",
        f"        self.images = train_images + {budget.FORWARD_SHARE!r} * validation_images  # validation: forward passes only",
        "        self.peak, self.epochs, self.first, self.epoch, self.times = peak_rate, None, None, 0, []",
        "",
        "    def used(self):",
        "        return time.perf_counter() - self.started",
        "",
        "    def rate(self, step):",
        f"        warmup = max(1.0, {budget.WARMUP_EPOCHS!r} * self.per_epoch)",
        "        total = None if self.epochs is None else max(1, self.epochs * self.per_epoch)",
        "        if total is not None:",
        "            warmup = max(1.0, min(warmup, 0.1 * total))",
        "        if step < warmup or total is None:",
        "            return self.peak * min(1.0, (step + 1) / warmup)",
        "        return self.peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1.0, total - warmup))))",
        "",
        "    def plan(self, step, epoch_s):",
        "        current, into = divmod(step, self.per_epoch)",
        "        finish_current = (1 - into / self.per_epoch) * epoch_s if into else 0.0",
        "        more = math.floor((BUDGET_S - self.used() - finish_current) / epoch_s) if epoch_s > 0 else 0",
        "        finishing = current + (1 if into else 0)",
        "        self.epochs = max(1, finishing, min(EPOCHS, finishing + max(0, more)))",
        "",
        "    def on_epoch_begin(self, epoch, logs=None):",
        "        self.epoch, self.epoch_started = epoch, self.used()",
        "",
        "    def on_train_batch_begin(self, batch, logs=None):",
        "        if self.peak is not None:",
        "            self.model.optimizer.learning_rate = self.rate(self.epoch * self.per_epoch + batch)",
        "",
        "    def on_train_batch_end(self, batch, logs=None):",
        "        step, now = self.epoch * self.per_epoch + batch + 1, self.used()",
        "        if self.epochs is None and (self.first is None or (self.first[0] - 1) // self.per_epoch != self.epoch):",
        "            self.first = (step, now)  # timing starts after the first batch (tracing) and again in a new epoch (validation)",
        f"        elif self.epochs is None and step - self.first[0] >= {budget.MEASURE_BATCHES} "
        f"and now - self.first[1] >= {budget.MEASURE_S}:",
        "            self.plan(step, (now - self.first[1]) / ((step - self.first[0]) * BATCH_SIZE) * self.images)",
        "        if now >= BUDGET_S:  # out of time: this epoch is the last",
        "            self.epochs, self.model.stop_training = self.epoch + 1, True",
        "",
        "    def on_epoch_end(self, epoch, logs=None):",
        "        self.times.append(self.used() - self.epoch_started)",
        "        usable = self.times[1:] if len(self.times) > 1 else self.times  # the first epoch also traced",
        "        self.plan((epoch + 1) * self.per_epoch, float(np.median(usable[-3:])))",
        "        if epoch + 1 >= self.epochs:",
        "            self.model.stop_training = True",
        "        print(f'time budget: {self.used():.0f} of {BUDGET_S:.0f} s used, {self.epochs} epochs planned')",
    ]


def _callbacks_code(config: TrainConfig) -> list[str]:
    callbacks = []
    signature = "def callbacks():"
    if config.schedule == "plateau":
        plateau = f"monitor='val_loss', factor={config.step_factor!r}, patience={config.patience}"
        callbacks.append(f"keras.callbacks.ReduceLROnPlateau({plateau})")
    elif config.schedule in _SCHEDULED and not _per_batch_budget(config):
        signature = f"def callbacks(first_epoch=0, base_rate={float(config.learning_rate)!r}, epochs=EPOCHS):"
        callbacks.append("keras.callbacks.LearningRateScheduler(lambda epoch, rate: learning_rate(epoch - first_epoch, base_rate, epochs))")
    if config.early_stopping:
        # Stops after `patience` epochs without a lower validation loss; restores the best epoch's weights.
        callbacks.append(f"keras.callbacks.EarlyStopping(monitor='val_loss', patience={config.patience}, restore_best_weights=True)")
    return [signature, "    return [", *(f"        {callback}," for callback in callbacks), "    ]"]


def _phase1_callbacks(config: TrainConfig) -> str:
    """The callbacks of the first ``fit``: a time budget's plan comes on top of the schedule's."""
    return "callbacks() + [TimeBudget(len(x_fit), len(x_validation))]" if config.budget_s is not None else "callbacks()"


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


def training_code(spec: ModelSpec, config: TrainConfig, num_classes: int, channels: int) -> list[str]:
    """Functions for the split, the data pipeline, class weights, the schedule and callbacks, then ``train``."""
    fine_tunes = backbones.fine_tunes(spec)
    parts = [_split_code()]
    if config.augmentation.active:
        parts.append(_augmentation_code(config))
    parts.append(_pipeline_code(config))
    if config.class_weights:
        parts.append(_class_weights_code(num_classes))
    if config.schedule in _SCHEDULED and not _per_batch_budget(config):
        parts.append(_schedule_code(config))
    if config.budget_s is not None:
        parts.append(_budget_code(config))
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
            *_fit_code(config, "history", "EPOCHS", _phase1_callbacks(config)),
            *(_fine_tune_code(spec, config) if fine_tunes else []),
            "    return model, history",
        ]
    )
    lines: list[str] = []
    for part in parts:
        lines += [*part, "", ""]
    return lines[:-2]
