"""Design: networks as data, their shapes and costs, the Keras model built from them, presets' recipes."""
