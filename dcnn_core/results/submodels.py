"""Small Keras models that expose a trained network's inner layers, built once per model and name.

Explanations (feature maps, Grad-CAM) and projections (the last hidden features) both need them;
they live here, below both, and are kept while their model lives.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from dcnn_core.runtime import import_keras

_submodels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → {name: derived keras.Model}
_submodels_lock = threading.Lock()


def cached_submodel(model, name: str, outputs: Callable[[], object]):
    """A ``keras.Model(model.input, outputs())`` built once per model and name."""
    with _submodels_lock:
        per_model = _submodels.setdefault(model, {})
        if name not in per_model:
            keras = import_keras()
            if len(model.inputs) != 1:
                raise ValueError("Only models with one image input can be looked inside.")
            per_model[name] = keras.Model(model.inputs[0], outputs(), name=f"{model.name}_{name}")
        return per_model[name]
