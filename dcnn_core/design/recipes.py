"""Training recipes: how each preset is meant to be trained, and the nearest design that fits a set.

A preset is half a lesson: the same network trained with the wrong settings teaches the wrong thing
(LeNet-5 under Adam at 1e-3 for 10 epochs looks worse than a dense net on Shapes). Each preset in
``dcnn_core.design.spec.PRESETS`` carries a ``Recipe``: a ``TrainConfig`` measured on this project's offline
sets (see BENCHMARKS.md §6, ``python bench/accuracy_table.py --recipes``) and one line on why.

``budget_config`` is the same recipe planned to a time budget instead ("best in N minutes",
``dcnn_core.training.budget``): its optimizer and peak rate, the augmentation the data set tolerates
(``augmentation_for``: flips suit clothes and shapes, not digits), a warm-up and a cosine that ends when
the time does. ``precision_for`` says whether a design trains in mixed bfloat16.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dcnn_core.design import plan
from dcnn_core.design.spec import ModelSpec
from dcnn_core.naming import counted
from dcnn_core.training import budget
from dcnn_core.training.config import Augmentation, TrainConfig

EDITED_SUFFIX = " (edited)"  # what the Model page appends to a preset's name once a slider moves


@dataclass(frozen=True)
class Recipe:
    """The training settings a preset was designed with, and why."""

    preset: str  # a key of dcnn_core.design.spec.PRESETS
    config: TrainConfig
    why: str  # one line a learner can read next to the button


SHIFT = Augmentation(shift=0.1)  # small moves, right for shapes and digits alike (flips are wrong for digits)

RECIPES: dict[str, Recipe] = {
    recipe.preset: recipe
    for recipe in (
        Recipe(
            "Article baseline",
            TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=32, epochs=10),
            "The article's own settings (Adam 1e-3, batch 32, 10 epochs): the reference every other design is measured against.",
        ),
        Recipe(
            "LeNet-5",
            TrainConfig(optimizer="adam", learning_rate=3e-3, batch_size=32, epochs=40, schedule="cosine", augmentation=SHIFT),
            "Small and cheap per epoch, so it gets many epochs at a higher rate (3e-3) that decays (cosine), with small shifts.",
        ),
        Recipe(
            "Simple CNN",
            TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=32, epochs=20, schedule="cosine", augmentation=SHIFT),
            "Adam with a cosine decay to settle at the end, and small shifts so it cannot memorise where things sit.",
        ),
        Recipe(
            "VGG-style mini",
            TrainConfig(optimizer="adamw", learning_rate=2e-3, batch_size=32, epochs=40, schedule="cosine", augmentation=SHIFT),
            "Many 3×3 filters overfit small sets: AdamW's weight decay keeps them small, 40 epochs of small batches (batch norm "
            "settles) and a cosine decay from 2e-3 use the depth. It starts slowly: under a time budget give it 30 epochs or more "
            "(on 3,000 Fashion-MNIST images one minute only ties the dense net, two minutes beat it: 0.875 against 0.846).",
        ),
        Recipe(
            "ResNet-style mini",
            TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=32, epochs=15, schedule="cosine", augmentation=SHIFT),
            "Skip connections train deep stacks quickly: 15 epochs with a cosine decay and small shifts reach the top.",
        ),
        Recipe(
            "MobileNet-style mini",
            TrainConfig(optimizer="adam", learning_rate=3e-3, batch_size=32, epochs=20, schedule="cosine", augmentation=SHIFT),
            "Built to be small (13k parameters, for phones), not to win here: few parameters learn slowly, so a higher rate "
            "(3e-3) with batch norm, decayed by cosine; depthwise convolutions make it slower per image on a CPU than its size suggests. "
            "In one minute on 3,000 Fashion-MNIST images it trails even the dense net (0.80 against 0.85): pick it to see what a "
            "phone-sized network gives up.",
        ),
    )
}

FLIPS_SUIT = frozenset({"fashion_mnist", "shapes", "cifar10"})  # mirrored clothes, shapes and photos are still themselves
# Presets measured faster in mixed bfloat16 than in float32 on a CPU with native bfloat16 (``bench/flops.py --precision
# both``, BENCHMARKS.md §11, AVX-512 BF16, 2 cores): Simple CNN ×1.63, LeNet-5 ×1.28, VGG-mini and ResNet-mini ×1.21;
# MobileNet-mini ×0.92 (depthwise convolutions gain nothing), so it stays float32 ("auto" means float32 for it).
# Add a preset here only once measured.
BFLOAT16_FASTER = frozenset({"LeNet-5", "Simple CNN", "VGG-style mini", "ResNet-style mini"})


# Epochs a preset needs before a budget pays off. VGG-mini starts slowly: 3 epochs of 6,000 Shapes gave 0.53 with its fixed
# recipe and 0.18 planned to 1 minute (BENCHMARKS.md §11); on real Fashion-MNIST (3,000 images) 20 epochs in one minute
# only tied the dense net (0.846), 42 in two minutes beat it (0.875); on real MNIST (6,000) 10 epochs gave 0.988.
BUDGET_MIN_EPOCHS = {"VGG-style mini": 30}


def budget_note(spec_name: str, epochs: int) -> str:
    """A sentence for a budgeted run that fitted fewer epochs than its preset needs ("" when it fitted enough)."""
    name = base_preset(spec_name)
    needed = BUDGET_MIN_EPOCHS.get(name)
    if needed is None or epochs >= needed:
        return ""
    return (f" Only {counted(epochs, 'epoch')} fitted; {name} needs about {needed} to settle: give it a longer "
            "budget, or try the Simple CNN, which learns the most per minute here.")  # fmt: skip


def augmentation_for(dataset_key: str) -> Augmentation:
    """What the data set tolerates: small shifts everywhere; left–right flips for clothes, shapes and photos, never digits."""
    return Augmentation(flip=dataset_key in FLIPS_SUIT, shift=SHIFT.shift)


def budget_config(preset_name: str, dataset_key: str, budget_s: float, seed: int = 0) -> TrainConfig:
    """The preset's recipe planned to ``budget_s`` seconds: its optimizer and peak rate, the data set's augmentation.

    Epochs are counted when training starts (``epochs`` is only the most); the rate warms up, then decays by
    cosine to zero at the end of the last epoch that fits. Early stopping is off: the schedule ends the run.
    """
    base = recipe_for(preset_name).config
    return replace(base, epochs=budget.MOST_EPOCHS, schedule="cosine", early_stopping=False, budget_s=float(budget_s), seed=seed,
                   augmentation=augmentation_for(dataset_key) if base.augmentation.active else base.augmentation)  # fmt: skip


def precision_for(precision: str, spec_name: str, cpu_has_bfloat16: bool) -> str:
    """The Keras dtype policy for a run: 'mixed_bfloat16' or 'float32'.

    "auto" picks bfloat16 only on a CPU that computes it natively and for a preset measured faster with it.
    "bfloat16" asked outright is honoured where the CPU has it (elsewhere it would only be slower).
    """
    if not cpu_has_bfloat16 or precision == "float32":
        return "float32"
    if precision == "bfloat16" or base_preset(spec_name) in BFLOAT16_FASTER:
        return "mixed_bfloat16"
    return "float32"


def base_preset(spec_name: str) -> str:
    """The preset a design started from ('LeNet-5 (edited)' → 'LeNet-5'), or the name itself."""
    return spec_name.removesuffix(EDITED_SUFFIX)


def recipe_for(preset_name: str) -> Recipe:
    """The recipe of a preset (an edited preset gets its base preset's recipe)."""
    name = base_preset(preset_name)
    if name not in RECIPES:
        raise ValueError(f"No recipe for {preset_name!r}: recipes exist for the presets {', '.join(RECIPES)}.")
    return RECIPES[name]


def has_recipe(spec_name: str) -> bool:
    return base_preset(spec_name) in RECIPES


def _fits(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int) -> bool:
    return plan.analyse(spec, input_shape, num_classes).ok


def nearest_fitting(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int) -> ModelSpec | None:
    """The smallest change to ``spec`` that fits ``input_shape``, or None when it already fits or nothing does.

    Tried in order: 'same' padding everywhere (keeps every layer), then pooling dropped from the last
    blocks, then the last blocks removed.
    """
    if _fits(spec, input_shape, num_classes):
        return None
    candidate = replace(spec, blocks=[replace(block, padding="same") for block in spec.blocks])
    for unpooled in range(len(candidate.blocks) + 1):
        blocks = list(candidate.blocks)
        for index in range(len(blocks) - unpooled, len(blocks)):
            blocks[index] = replace(blocks[index], pooling="none")
        if _fits(replace(candidate, blocks=blocks), input_shape, num_classes):
            return replace(candidate, blocks=blocks)
    for kept in range(len(candidate.blocks) - 1, 0, -1):
        shorter = replace(candidate, blocks=candidate.blocks[:kept])
        if _fits(shorter, input_shape, num_classes):
            return shorter
    return None


def describe_change(original: ModelSpec, fitted: ModelSpec) -> str:
    """One sentence naming what ``nearest_fitting`` changed."""
    changes = []
    if any(block.padding != "same" for block in original.blocks):
        changes.append("'same' padding in every block")
    unpooled = [str(i + 1) for i, (a, b) in enumerate(zip(original.blocks, fitted.blocks, strict=False)) if a.pooling != b.pooling]
    if unpooled:
        changes.append(f"no pooling in block(s) {', '.join(unpooled)}")
    if len(fitted.blocks) < len(original.blocks):
        changes.append(f"only the first {len(fitted.blocks)} block(s)")
    return "; ".join(changes) or "no change"
