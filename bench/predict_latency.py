"""One-image prediction latency of the Simple CNN: the app's path vs ``model.predict``.

A: ``dcnn_core.results.evaluation.predict_probabilities(model, image[None])`` — what the Predict page calls
for an uploaded or drawn image (the model called directly, no ``predict`` loop).
B: ``model.predict(image[None], verbose=0)``.
C: A again, right after ``keras.backend.clear_session(free_memory=False)`` (not timed). Streamlit calls
``keras.backend.clear_session()`` after every script run once Keras is imported, which empties
TensorFlow's eager kernel cache, so the Predict page's one prediction per run met a cold cache —
until app.py's ``streamlit_private.keep_keras_session()`` stopped it: C is the server as it was before.
The model is the "Simple CNN" preset built for 28×28×1 uint8 input and 10 classes (untrained: the
weights do not change the cost). Each timed call is one uint8 image, alternating A B, B A, … after an
untimed warm-up (graph tracing), in rotating order; p50 and p95 of each, and the median of the
per-round ratios A/B and C/B.

    python bench/predict_latency.py [--calls 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import percentile, print_header, summarise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls of each (default 300)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls of each first (default 20)")
    parser.add_argument("--model", default="Simple CNN")
    parser.add_argument("--threads", type=int, default=1, help="DCNN_TF_THREADS (default 1, the app's default on 2 cores)")
    args = parser.parse_args()
    os.environ["DCNN_TF_THREADS"] = str(args.threads)
    print_header("Prediction latency, one 28×28 image")
    from dcnn_core.design import spec as model_spec
    from dcnn_core.design.build import build_model
    from dcnn_core.results import evaluation
    from dcnn_core.runtime import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = build_model(model_spec.preset(args.model), (28, 28, 1), 10)
    images = np.random.default_rng(0).integers(0, 256, size=(args.calls + args.warmup, 28, 28, 1), dtype=np.uint8)

    def app_path(image: np.ndarray) -> np.ndarray:
        return evaluation.predict_probabilities(model, image[None])

    def keras_predict(image: np.ndarray) -> np.ndarray:
        return model.predict(image[None], verbose=0)

    def after_rerun(image: np.ndarray) -> float:
        keras.backend.clear_session(free_memory=False)  # what Streamlit does after each run; not timed
        started = time.perf_counter()
        evaluation.predict_probabilities(model, image[None])
        elapsed = time.perf_counter() - started
        app_path(image), keras_predict(image)  # untimed: warm the cache again for A and B
        return elapsed

    def timed(function):
        def run(image: np.ndarray) -> float:
            started = time.perf_counter()
            function(image)
            return time.perf_counter() - started

        return run

    for image in images[: args.warmup]:
        np.testing.assert_allclose(app_path(image), keras_predict(image), rtol=1e-4, atol=1e-6)  # the same answer
    paths = [("app", timed(app_path)), ("predict", timed(keras_predict)), ("rerun", after_rerun)]
    timings: dict[str, list[float]] = {name: [] for name, _ in paths}
    for number, image in enumerate(images[args.warmup :]):
        for name, function in paths[number % 3 :] + paths[: number % 3]:
            timings[name].append(function(image))
    print(f"Model: {args.model}, {model.count_params():,} parameters; TF threads {args.threads}; {args.calls} timed calls each")
    print()
    print("| Path | p50 | p95 | mean |")
    print("|---|---|---|---|")
    labels = (("app", "A: predict_probabilities (the app's path), warm"), ("predict", "B: model.predict, warm"),
              ("rerun", "C: predict_probabilities after clear_session (the server before keep_keras_session)"))  # fmt: skip
    for name, label in labels:
        values = [t * 1000 for t in timings[name]]
        print(f"| {label} | {percentile(values, 0.5):.2f} ms | {percentile(values, 0.95):.2f} ms | {np.mean(values):.2f} ms |")
    print()
    for name, label in (("app", "A"), ("rerun", "C")):
        ratios = summarise([a / b for a, b in zip(timings[name], timings["predict"], strict=True)])
        p50 = percentile(timings[name], 0.5) * 1000
        print(f"RATIO {label} / model.predict, per round: {ratios.format('.3f')}; "
              f"{label} p50 {p50:.2f} ms — target ≤ 10 ms: {'met' if p50 <= 10 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
