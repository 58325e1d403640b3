"""Start, stop, continue, draw and compare training runs on the Train page."""

from __future__ import annotations

import dataclasses

import streamlit as st

from dcnn_core.design import recipes
from dcnn_core.design.spec import ARTICLE_TEST_ACCURACY
from dcnn_core.results import plots, training_plots
from dcnn_core.room.rules import Refused
from dcnn_core.training import budget
from dcnn_core.training.config import OPTIMIZERS, PRECISIONS, SCHEDULES, Augmentation, TrainConfig, schedule_preview
from dcnn_core.training.engine import RunInfo
from dcnn_core.training.progress import Progress, Status
from ui import resources, state
from ui.frame import format_seconds
from ui.glossary import HELP
from ui.text import plain

LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]
REFUSED = "train_refused"  # why the last Start was refused (another run of this user active, the room full)
SCHEDULE_NAMES = {"constant": "Constant", "step": "Step decay", "cosine": "Cosine decay", "plateau": "Reduce on plateau"}
BUDGETS = [0.0, *(minutes * 60.0 for minutes in budget.BUDGET_MINUTES)]  # seconds; 0: a fixed number of epochs (no budget)
PRECISION_NAMES = {"auto": "Automatic", "float32": "float32", "bfloat16": "bfloat16 (mixed)"}
# A moving chart needs no zoom or pan, and on a phone Plotly's toolbar sat over the subplot titles ("Accuracy").
LIVE_CHART = {"displayModeBar": False}


def _budget_name(seconds: float) -> str:
    return f"Best in {budget.describe_budget(seconds)}" if seconds else "Fixed epochs"


def _basics(current: TrainConfig) -> dict:
    a, b, c = st.columns(3)
    rate_choices = sorted({*LEARNING_RATES, current.learning_rate})
    seconds = current.budget_s or 0.0
    budgets = BUDGETS if seconds in BUDGETS else [*BUDGETS, seconds]
    chosen = b.selectbox("Train for", budgets, index=budgets.index(seconds), format_func=_budget_name, key="train_budget",
                         help="Best in N minutes: the first batches are timed, the epochs that fit are counted, and the rate "
                              "decays to zero when the time is up (countdown in the progress line).") or None  # fmt: skip
    epochs = b.slider("Epochs", 1, 50, min(current.epochs, 50), key="train_epochs", disabled=chosen is not None,
                      help="Counted from the measured speed when training to a time budget." if chosen else HELP["epochs"])  # fmt: skip
    return {
        "optimizer": a.selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(current.optimizer), key="train_optimizer",
                                 help=HELP["optimizer"] + " (sgd here uses momentum 0.9.)"),
        "learning_rate": a.select_slider("Learning rate", rate_choices, value=current.learning_rate, format_func=lambda v: f"{v:g}",
                                         key="train_learning_rate", help=HELP["learning_rate"]),
        "batch_size": b.select_slider("Batch size", [8, 16, 32, 64, 128, 256], value=current.batch_size, key="train_batch_size",
                                      help=HELP["batch_size"]),
        "budget_s": chosen,
        "epochs": budget.MOST_EPOCHS if chosen is not None else epochs,
        "precision": c.selectbox("Precision", PRECISIONS, index=PRECISIONS.index(current.precision), format_func=PRECISION_NAMES.get,
                                 key="train_precision", help="Automatic: bfloat16 where this CPU computes it natively and the "
                                 "design measured faster with it; float32 otherwise. The output layer is always float32."),
        "validation_split": c.slider("Validation split", 0.0, 0.5, current.validation_split, step=0.05, key="train_validation_split",
                                     help="Share of the training images held out to check for over-fitting each epoch."),
        "seed": c.number_input("Seed", 0, 99_999, current.seed, key="train_seed", help="Same seed, same design, same data: same run."),
    }  # fmt: skip


def _schedule(current: TrainConfig) -> dict:
    left, right = st.columns([1, 2])
    values = {
        "schedule": left.selectbox("Learning-rate schedule", SCHEDULES, index=SCHEDULES.index(current.schedule),
                                   format_func=SCHEDULE_NAMES.get, key="train_schedule"),
        "step_every": left.slider("Step every (epochs)", 1, 20, current.step_every, key="train_step_every"),
        "step_factor": left.select_slider("Multiply the rate by", [0.1, 0.2, 0.3, 0.5, 0.7], value=current.step_factor,
                                          key="train_step_factor"),
        "early_stopping": left.toggle("Early stopping (restores the best weights)", current.early_stopping, key="train_early_stopping"),
        "patience": left.slider("Patience (epochs)", 1, 10, current.patience, key="train_patience",
                                help="Epochs without a better validation loss before stopping, or before a plateau drop."),
    }  # fmt: skip
    return values


def _augmentation(current: Augmentation) -> Augmentation:
    a, b = st.columns(2)
    return Augmentation(
        flip=a.toggle("Flip left–right", current.flip, key="train_aug_flip", help="Right for clothes and shapes, wrong for digits."),
        rotation=a.slider("Rotation (fraction of a turn)", 0.0, 0.5, current.rotation, step=0.05, key="train_aug_rotation"),
        zoom=a.slider("Zoom", 0.0, 0.5, current.zoom, step=0.05, key="train_aug_zoom"),
        shift=b.slider("Shift", 0.0, 0.5, current.shift, step=0.05, key="train_aug_shift"),
        contrast=b.slider("Contrast", 0.0, 0.5, current.contrast, step=0.05, key="train_aug_contrast"),
    )


WIDGET_KEYS = {  # TrainConfig field → the widget that edits it
    "optimizer": "train_optimizer", "learning_rate": "train_learning_rate", "batch_size": "train_batch_size",
    "epochs": "train_epochs", "validation_split": "train_validation_split", "seed": "train_seed",
    "schedule": "train_schedule", "step_every": "train_step_every", "step_factor": "train_step_factor",
    "early_stopping": "train_early_stopping", "patience": "train_patience", "class_weights": "train_class_weights",
    "budget_s": "train_budget", "precision": "train_precision",
}  # fmt: skip


def recipe_config(preset_name: str, budget_s: float | None, seed: int) -> TrainConfig:
    """The preset's recipe: its fixed epochs, or planned to ``budget_s`` with the current data set's augmentation."""
    if budget_s is None:
        return dataclasses.replace(recipes.recipe_for(preset_name).config, seed=seed)
    return recipes.budget_config(preset_name, state.dataset_choice().key, budget_s, seed=seed)


def use_config(config: TrainConfig, preset_name: str) -> None:
    """``config`` into the session and every Train page widget (a budget shows the preset's fixed epochs, disabled)."""
    st.session_state[state.TRAIN_CONFIG] = config
    for name, key in WIDGET_KEYS.items():
        st.session_state[key] = getattr(config, name)
    st.session_state["train_budget"] = config.budget_s or 0.0  # the selectbox's "Fixed epochs" is 0
    if config.budget_s is not None:
        st.session_state["train_epochs"] = recipes.recipe_for(preset_name).config.epochs
    for field in dataclasses.fields(Augmentation):
        st.session_state[f"train_aug_{field.name}"] = getattr(config.augmentation, field.name)


def apply_recipe(preset_name: str, budget_s: float | None = None) -> None:
    """The recipe button's callback: the preset's recipe (keeping the user's seed and time budget) into the config and every widget."""
    use_config(recipe_config(preset_name, budget_s, state.train_config().seed), preset_name)


def _recipe_offer(current: TrainConfig) -> None:
    name = state.model_spec_state().name
    if not recipes.has_recipe(name):
        return
    recipe = recipes.recipe_for(name)
    left, right = st.columns([3, 1], vertical_alignment="center")
    in_use = current == recipe_config(recipe.preset, current.budget_s, current.seed)
    planned = f", planned to {budget.describe_budget(current.budget_s)}" if current.budget_s is not None else ""
    left.caption(f"**{plain(recipe.preset)}'s recipe{planned}**{' (in use)' if in_use else ''}: {recipe.why}")
    right.button("Use its recipe", key="train_use_recipe", on_click=apply_recipe, args=(recipe.preset, current.budget_s),
                 icon=":material/menu_book:", disabled=in_use,
                 help="Sets every setting below to this preset's recipe (for the time budget chosen); edit freely after.")  # fmt: skip


def config_controls(dataset) -> TrainConfig:
    """Training settings widgets in tabs; returns the config they describe (or the last valid one)."""
    current = state.train_config()
    recipe_slot = st.container()  # above the tabs, filled once the widgets' config is known
    basics_tab, schedule_tab, augmentation_tab, balance_tab = st.tabs(["Basics", "Schedule & early stopping", "Augmentation", "Imbalance"])
    with basics_tab:
        values = _basics(current)
    with schedule_tab:
        values |= _schedule(current)
    with augmentation_tab:
        values["augmentation"] = _augmentation(current.augmentation)
    with balance_tab:
        values["class_weights"] = st.toggle("Weigh classes by 1 / frequency", current.class_weights, key="train_class_weights",
                                            help="Rare classes count more in the loss; useful when classes are imbalanced.")  # fmt: skip
    config = TrainConfig(
        **{key: (float(v) if key in ("learning_rate", "validation_split", "step_factor") else v) for key, v in values.items()}
    )
    try:
        config.validate()
    except ValueError as error:
        st.warning(str(error), icon=":material/warning:")
        config = current
    with recipe_slot:
        _recipe_offer(config)
    if config is current:
        return current
    st.session_state[state.TRAIN_CONFIG] = config
    with schedule_tab:
        if config.budget_s is not None and config.schedule == "cosine":
            st.caption("With a time budget the rate rises over the first half epoch, then decays by cosine to zero at the end "
                       "of the last epoch that fits; the epochs are counted once the first batches are timed.")  # fmt: skip
        else:
            note = "drawn without drops: plateau drops depend on the validation loss" if config.schedule == "plateau" else ""
            st.plotly_chart(training_plots.schedule_plot(schedule_preview(config), note), key="train_schedule_preview")
    with augmentation_tab:
        _augmentation_preview(dataset, config)
    return config


def _augmentation_preview(dataset, config: TrainConfig) -> None:
    if not config.augmentation.active:
        st.caption("Switch on an augmentation to preview it.")
        return
    if st.button("Preview augmented samples", key="train_aug_preview", icon=":material/visibility:"):
        from dcnn_core.training.pipeline import augment_preview

        originals = dataset.x_train[:4]
        augmented = augment_preview(originals, config.augmentation, copies=5, seed=config.seed)
        names = [dataset.class_names[label] for label in dataset.y_train[:4] for _ in range(5)]
        st.plotly_chart(plots.image_grid(augmented, names, columns=5, tile_px=90), key="train_aug_grid")


def start_job(config: TrainConfig) -> None:
    """The Start button's callback: a new run of the session's model on its data, unless refused (one line why)."""
    from dcnn_core.runtime import import_keras

    import_keras()  # on the script thread first: two threads importing at once can break imports
    try:
        resources.start_run(state.model_spec_state(), resources.current_dataset(), config)
    except Refused as error:
        st.session_state[REFUSED] = str(error)


def continue_run(run_id: str, extra_epochs: int) -> None:
    from dcnn_core.runtime import import_keras

    import_keras()
    try:
        resources.continue_run(run_id, extra_epochs)
    except ValueError as error:  # Refused included: another training of this user, or the room is full
        st.session_state["train_continue_error"] = str(error)
        return


def progress_text(progress: Progress, refresh_s: float = 0.0) -> str:
    """One line: the place in line and the wait (until the curve shows, this page's redraw included), or how far it is."""
    if progress.status == "queued":
        wait = f", about {format_seconds(progress.eta_s + refresh_s)}" if progress.eta_s is not None else ""
        return f"Waiting for its first turn — place {progress.queue_position or '?'} in line{wait}."
    epoch = min(progress.epoch + 1, progress.epochs)
    if progress.budget_s is not None:  # a time budget: the countdown, and the epochs once they are planned
        counted = f"Epoch {epoch}/{progress.epochs}" if progress.budget_planned else f"Epoch {epoch} (timing the first batches)"
        return " · ".join([counted, f"batch {progress.batch}/{progress.batches_per_epoch or '?'}",
                           f"{format_seconds(progress.budget_left_s)} of {format_seconds(progress.budget_s)} left"])  # fmt: skip
    parts = [f"Epoch {epoch}/{progress.epochs}", f"batch {progress.batch}/{progress.batches_per_epoch or '?'}",
             f"{format_seconds(progress.elapsed_s)} elapsed"]  # fmt: skip
    if progress.eta_s is not None:
        parts.append(f"about {format_seconds(progress.eta_s)} left")
    return " · ".join(parts)


def against_the_article(test_accuracy: float) -> str:
    """One line setting a Fashion-MNIST run's test accuracy beside the article's dense net."""
    points = (test_accuracy - ARTICLE_TEST_ACCURACY) * 100
    if abs(points) < 0.05:
        return f"The article's dense net reached {ARTICLE_TEST_ACCURACY} on this test set: this run matches it."
    relation = "beats it by" if points > 0 else "is below it by"
    return f"The article's dense net reached {ARTICLE_TEST_ACCURACY} on this test set: this run {relation} {abs(points):.1f} points."


def show_outcome(progress: Progress, dataset_key: str = "") -> None:
    if progress.status == Status.FINISHED:
        st.success(progress.message, icon=":material/check_circle:")
    elif progress.status == Status.STOPPED:
        st.info(progress.message, icon=":material/stop_circle:")
    elif progress.status == Status.DIVERGED:
        st.error(progress.message, icon=":material/error:")
    elif progress.status == Status.FAILED:
        st.error(f"Training failed. {progress.message}", icon=":material/block:")  # the details are in the server log
    if progress.test_accuracy is not None:
        st.caption(f"Test accuracy {progress.test_accuracy:.4f} · test loss {progress.test_loss:.4f} · "
                   f"{format_seconds(progress.elapsed_s)} of training")  # fmt: skip
        if dataset_key == "fashion_mnist":
            st.markdown(against_the_article(progress.test_accuracy))


def _continue_controls(run: RunInfo) -> None:
    if not run.can_continue:
        return
    left, right = st.columns([1, 2], vertical_alignment="bottom")
    extra = left.number_input("More epochs", 1, 100, 5, key="train_continue_epochs")
    right.button("Continue training", key="train_continue", on_click=continue_run, args=(run.run_id, int(extra)),
                 icon=":material/fast_forward:")  # fmt: skip
    error = st.session_state.pop("train_continue_error", None)
    if error:
        st.error(error, icon=":material/block:")


def draw_run(run: RunInfo, was_active: bool) -> None:
    """Status, progress, Stop and the live curves of one run (drawn inside a fragment)."""
    progress = resources.progress(run.run_id)
    if progress is None:  # deleted meanwhile
        return
    if was_active and not progress.active:
        st.rerun()  # the run just ended: redraw the whole page (buttons, runs table, sidebar)
    st.markdown(f"**{plain(run.name)}** on **{plain(run.dataset_title)}**")
    with st.container(key="train_status"):
        if progress.active:
            left, right = st.columns([5, 1], vertical_alignment="center")
            left.progress(progress.fraction_done, text=progress_text(progress, resources.live_refresh_s()))
            right.button("Stop", key="train_stop", on_click=resources.stop_run, args=(run.run_id,), type="primary",
                         use_container_width=True)  # fmt: skip
            others = resources.engine().room().running - 1
            sharing = (
                f" · taking turns with {others} other training{'s' if others > 1 else ''}"
                if others > 0 and progress.status == "running"
                else ""
            )
            st.caption(progress.message + sharing)
        else:
            show_outcome(progress, run.dataset_ref.get("key", ""))
            if progress.status in (Status.FINISHED, Status.STOPPED):
                st.page_link("pages/predict.py", label="Try it on your photo", icon=":material/photo_camera:")
                _continue_controls(resources.engine().run(run.run_id) or run)
    if progress.history["loss"] or progress.batch_loss:
        curves = lambda: training_plots.training_curves(
            progress.history, progress.batch_steps, progress.batch_loss, progress.batch_accuracy, progress.fine_tune_from
        )
        st.plotly_chart(resources.live_figure(run.run_id, "curves", progress.version, curves), key="train_curves", config=LIVE_CHART)
    if progress.history["learning_rate"]:
        speed = lambda: training_plots.rate_and_speed(progress.history)
        figure = resources.live_figure(run.run_id, "speed", len(progress.history["learning_rate"]), speed)
        st.plotly_chart(figure, key="train_rate_speed", config=LIVE_CHART)
