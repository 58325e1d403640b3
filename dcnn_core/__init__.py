"""DCNN Studio core: data, models, training, evaluation — plain Python, no UI.

Importing this package is cheap: TensorFlow/Keras are imported only by the
modules that need them (``dcnn_core.design.build``, ``dcnn_core.training.job``, ...),
and only when their functions run.
"""
