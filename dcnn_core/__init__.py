"""DCNN Studio core: data, models, training, evaluation — plain Python, no UI.

Importing this package is cheap: TensorFlow/Keras are imported only by the
modules that need them (``dcnn_core.build``, ``dcnn_core.training``, ...),
and only when their functions run.
"""
