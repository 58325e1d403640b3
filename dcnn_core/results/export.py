"""Export a trained model — proven by reloading it — and import a .keras file safely.

Every export is loaded back and must give the same predictions as the original
on sample images before its bytes are returned; otherwise ``ExportError``.
Imports accept only a ``.keras`` zip, load it with ``safe_mode=True`` and no
custom objects, and check that it fits the chosen data set.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcnn_core.data import safe_zip
from dcnn_core.data.datasets import Dataset
from dcnn_core.results import keras_check
from dcnn_core.results.keras_layers import ConfigRefused
from dcnn_core.runtime import import_keras

MAX_IMPORT_BYTES = 50 * 1024 * 1024
MAX_ZIP_MEMBERS = 64
MAX_UNCOMPRESSED_BYTES = 4 * MAX_IMPORT_BYTES
MAX_CONFIG_BYTES = 5 * 1024 * 1024
MAX_ZIP_RATIO = 100  # uncompressed ÷ compressed: weights barely compress, so more is a zip bomb
WEIGHTS_FILE = "model.weights.h5"
MAX_IMPORT_PARAMETERS = 5_000_000  # a caller passes the server's own limit; None means no limit
KERAS_TOLERANCE = 1e-5  # reloading the same weights must give the same numbers
TFLITE_TOLERANCE = 1e-4  # TensorFlow Lite runs other kernels: float rounding differs slightly


class ExportError(RuntimeError):
    """An export that failed or did not reproduce the model's predictions; the message says which."""


class ImportRefused(ValueError):
    """An uploaded model file that was not accepted; the message says why, for the user."""


@dataclass(eq=False)
class ImportedRun:
    """A model brought in from a .keras file, usable wherever a finished training run is."""

    job_id: str
    name: str  # the uploaded file's name
    model: object
    dataset: Dataset
    status: str = "imported"
    ended: bool = True
    file_id: str = ""  # the upload it came from, so one upload is imported once
    version: int = 0  # it never trains: one version

    @property
    def display_name(self) -> str:
        return self.name.rsplit(".", 1)[0]

    def training_history(self) -> dict[str, list[float]] | None:
        return None  # imported: no training history


_import_ids = itertools.count(1)


def sample_inputs(model, count: int = 4, seed: int = 0) -> np.ndarray:
    """Seeded random uint8-valued images of the model's input shape, as float32."""
    shape = tuple(int(v) for v in model.input_shape[1:])
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape)).astype(np.float32)


def _check_same(expected: np.ndarray, actual: np.ndarray, what: str, tolerance: float) -> None:
    if expected.shape != actual.shape or not np.allclose(expected, actual, rtol=0, atol=tolerance):
        difference = float(np.max(np.abs(expected - actual))) if expected.shape == actual.shape else math.inf
        raise ExportError(
            f"The exported {what} does not reproduce the model's predictions (largest difference {difference:.2e}, "
            f"tolerance {tolerance:.0e}), so it is not offered for download."
        )


def _samples(model, samples: np.ndarray | None) -> np.ndarray:
    return sample_inputs(model) if samples is None else np.asarray(samples, np.float32)


def export_keras(model, samples: np.ndarray | None = None, tolerance: float = KERAS_TOLERANCE) -> bytes:
    """The model as a ``.keras`` file, after checking that the file reloads to the same predictions."""
    keras = import_keras()
    samples = _samples(model, samples)
    expected = np.asarray(model(samples, training=False))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        try:
            model.save(path)
            data = path.read_bytes()
            reloaded = keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as error:
            raise ExportError(f"Saving the model as .keras failed: {type(error).__name__}: {error}") from error
    _check_same(expected, np.asarray(reloaded(samples, training=False)), ".keras model", tolerance)
    return data


def _tflite_interpreter(data: bytes):
    """An interpreter for TFLite bytes: LiteRT when installed, else TensorFlow's own (deprecated) one."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_content=data)
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter warns that it moves to LiteRT
            return tf.lite.Interpreter(model_content=data)


def run_tflite(data: bytes, samples: np.ndarray) -> np.ndarray:
    """Predictions of a TFLite model, one image at a time (its input has a batch of one)."""
    interpreter = _tflite_interpreter(data)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for image in np.asarray(samples, np.float32):
        interpreter.set_tensor(source["index"], image[None].astype(source["dtype"]))
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_tensor(target["index"])[0]))
    return np.stack(outputs)


def export_tflite(model, samples: np.ndarray | None = None, tolerance: float = TFLITE_TOLERANCE) -> bytes:
    """The model as TensorFlow Lite (float32), after checking it predicts what the model does."""
    import_keras()
    import tensorflow as tf

    if not hasattr(tf, "lite"):
        raise ExportError("This TensorFlow build has no TensorFlow Lite converter, so .tflite export is unavailable.")
    samples = _samples(model, samples)
    try:
        model = float32_copy(model)  # TensorFlow Lite has no bfloat16 kernels: it gets (and is checked against) the float32 network
    except Exception as error:
        raise ExportError(f"The model could not be rebuilt to compute in float32 for TensorFlow Lite: {type(error).__name__}") from error
    expected = np.asarray(model(samples, training=False))
    try:
        data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception as error:
        raise ExportError(f"TensorFlow Lite conversion failed: {type(error).__name__}: {str(error)[:300]}") from error
    try:
        actual = run_tflite(data, samples)
    except Exception as error:
        raise ExportError(f"The converted TensorFlow Lite model could not be run: {type(error).__name__}: {error}") from error
    _check_same(expected, actual, "TensorFlow Lite model", tolerance)
    return data


def float32_copy(model):
    """``model`` itself when it computes in float32; else a copy that does, with the same weights.

    A run trained under mixed bfloat16 (``recipes.precision_for``) keeps its weights in float32 and computes in
    bfloat16; formats without bfloat16 kernels (TensorFlow Lite) get the same network computing in float32.
    """
    import_keras()
    if not any(getattr(getattr(layer, "dtype_policy", None), "name", "float32").startswith("mixed_") for layer in model.layers):
        return model
    config = model.get_config()
    if not _mixed_policies(config):
        return model
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _mixed_policies(config) -> int:
    """Set every mixed dtype policy in a Keras config to float32, in place; how many there were."""
    count, stack = 0, [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "DTypePolicy" and str(item.get("config", {}).get("name", "")).startswith("mixed_"):
                item["config"]["name"] = "float32"
                count += 1
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def history_csv(history: dict[str, list[float]]) -> str:
    """Per-epoch metrics as CSV: an ``epoch`` column, then one column per metric (blank where missing)."""
    names = list(history)
    epochs = max((len(values) for values in history.values()), default=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", *names])
    for epoch in range(epochs):
        row = [history[name][epoch] if epoch < len(history[name]) else math.nan for name in names]
        writer.writerow([epoch + 1, *("" if not math.isfinite(value) else repr(float(value)) for value in row)])
    return buffer.getvalue()


# --- import -------------------------------------------------------------------------------------


def _modules(config) -> set[str]:
    """Every ``"module"`` named anywhere in a Keras config."""
    found: set[str] = set()
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("module"), str):
                found.add(item["module"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _check_archive(data: bytes, name: str) -> tuple[dict, int]:
    """A .keras file is a zip holding config.json; refuse anything else before Keras reads it.

    Returns the parsed config.json and the size of the weights file. The zip gets the same checks as a
    data-set zip (directory size, zip64 placeholders, paths, links, ratios) before any member is read.
    """
    if not name.lower().endswith(".keras"):
        raise ImportRefused(f"'{name}' is not a .keras file. Only Keras 3 '.keras' model files can be imported.")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ImportRefused(f"'{name}' is not a .keras file (it is not a zip archive).")
    try:
        safe_zip.check_directory_size(data, name, MAX_ZIP_MEMBERS)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = safe_zip.check_zip(
                archive, len(data), name, max_members=MAX_ZIP_MEMBERS, max_total_bytes=MAX_UNCOMPRESSED_BYTES, max_ratio=MAX_ZIP_RATIO
            )
            by_name = {member.filename: member for member in members}
            if "config.json" not in by_name:
                raise ImportRefused(f"'{name}' is a zip but not a Keras model: it has no config.json.")
            text = safe_zip.read_member(archive, by_name["config.json"], MAX_CONFIG_BYTES)
            weights = by_name.get(WEIGHTS_FILE)
    except ImportRefused:
        raise
    except safe_zip.ZipRefused as error:
        raise ImportRefused(str(error)) from error
    except safe_zip.MemberUnreadable as error:
        raise ImportRefused(f"'{name}' has a config.json that cannot be read: {error}.") from error
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as error:
        raise ImportRefused(f"'{name}' is a damaged zip archive and could not be read.") from error
    try:
        config = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ImportRefused(f"'{name}' has a config.json that is not valid JSON.") from error
    outside = sorted(module for module in _modules(config) if module != "keras" and not module.startswith("keras."))
    if outside:
        raise ImportRefused(f"'{name}' refers to code outside Keras ({', '.join(outside[:3])}); only standard Keras layers are accepted.")
    if weights is None:
        raise ImportRefused(f"'{name}' is a zip but not a Keras model file: it has no {WEIGHTS_FILE}.")
    return config, weights.file_size


def _check_config(
    config: dict, weights_bytes: int, name: str, input_shape: tuple[int, int, int], num_classes: int, max_parameters: int | None
) -> None:
    """Shapes and size from config.json alone, so nothing is allocated for a model that will be refused."""
    try:
        summary = keras_check.summarise(config)
    except ConfigRefused as error:
        raise ImportRefused(f"'{name}' was refused: {error}.") from error
    _check_input_shape(summary.input_shape, name, input_shape)
    if summary.output_shape != (num_classes,):
        raise ImportRefused(f"'{name}' outputs shape {summary.output_shape}, but the chosen data set has {num_classes} classes.")
    if max_parameters is not None and summary.parameters > max_parameters:
        raise ImportRefused(
            f"'{name}' has {summary.parameters:,} parameters, above this server's limit of {max_parameters:,}. It was refused "
            "before loading."
        )
    try:
        keras_check.check_weights_size(summary, weights_bytes)
    except ConfigRefused as error:
        raise ImportRefused(f"'{name}' was refused: {error}.") from error


def _check_input_shape(shape: tuple[int, ...], name: str, input_shape: tuple[int, int, int]) -> None:
    if tuple(shape) != tuple(input_shape):
        height, width, channels = input_shape
        raise ImportRefused(
            f"'{name}' takes inputs of shape {tuple(shape)}, but the chosen data set's images are {height}×{width}×{channels}. "
            "Choose the data set it was trained on (Data page)."
        )


def _load(data: bytes, name: str):
    keras = import_keras()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.keras"
        path.write_bytes(data)
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as error:
            text = str(error)
            if "safe_mode" in text or "lambda" in text.lower():
                raise ImportRefused(
                    f"'{name}' contains a Lambda layer or other Python code. Code inside a model file could run on this "
                    "server, so it is refused. Rebuild the model from standard Keras layers."
                ) from error
            first = text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__
            raise ImportRefused(f"'{name}' could not be loaded as a Keras model: {first}") from error


def _check_fits(model, name: str, input_shape: tuple[int, int, int], num_classes: int, max_parameters: int | None) -> None:
    keras = import_keras()
    if not isinstance(model, keras.Model) or len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ImportRefused(f"'{name}' must be a Keras model with one image input and one output.")
    _check_input_shape(tuple(model.input_shape[1:]), name, input_shape)
    if tuple(model.output_shape[1:]) != (num_classes,):
        raise ImportRefused(f"'{name}' outputs shape {tuple(model.output_shape[1:])}, but the chosen data set has {num_classes} classes.")
    if max_parameters is not None and model.count_params() > max_parameters:
        raise ImportRefused(f"'{name}' has {model.count_params():,} parameters, above this server's limit of {max_parameters:,}.")
    outputs = np.asarray(model(sample_inputs(model, 2), training=False))
    if not (np.all(outputs >= -1e-6) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3)):
        raise ImportRefused(f"'{name}' does not output class probabilities; its last layer must be a softmax.")


def import_keras_model(
    data: bytes,
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    max_bytes: int = MAX_IMPORT_BYTES,
    max_parameters: int | None = MAX_IMPORT_PARAMETERS,
):
    """Load an uploaded ``.keras`` model safely and check that it fits the data set.

    Args:
        data, name: the uploaded file.
        input_shape: the data set's image shape (H, W, C), which the model must take.
        num_classes: how many probabilities the model must output.
    Raises:
        ImportRefused: for anything but a safe, fitting Keras model; the message says why.
    """
    if len(data) == 0:
        raise ImportRefused(f"'{name}' is empty.")
    if len(data) > max_bytes:
        raise ImportRefused(f"'{name}' is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
    config, weights_bytes = _check_archive(data, name)
    _check_config(config, weights_bytes, name, input_shape, num_classes, max_parameters)
    model = _load(data, name)
    _check_fits(model, name, input_shape, num_classes, max_parameters)
    return model


def imported_run(model, name: str, dataset: Dataset, file_id: str = "") -> ImportedRun:
    """Wrap an imported model as a run of ``dataset``."""
    return ImportedRun(f"import-{next(_import_ids)}", name, model, dataset, file_id=file_id)
