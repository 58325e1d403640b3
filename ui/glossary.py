"""One-line explanations of the words a newcomer meets on the Model and Train pages (the widgets' ``help``)."""

from __future__ import annotations

HELP = {
    "conv_layers": "How many convolutions the block stacks before it pools. More layers see larger shapes, and cost more time.",
    "filters": "How many patterns each convolution learns to detect; each gives one feature map. More filters: more detail, "
    "more time and memory.",
    "kernel_size": "The size of the window a filter slides over the image, in pixels (3 means 3×3). Two 3×3 layers see as "
    "far as one 5×5, with fewer weights.",
    "stride": "How many pixels the window moves each step. 2 halves the feature maps' width and height, like pooling.",
    "padding": "'same' adds a border of zeros so the output keeps the input's size; 'valid' adds none, so each "
    "convolution trims the edges.",
    "activation": "The function applied after each convolution; ReLU (keep positives, zero the rest) is the usual choice.",
    "pooling": "Shrinks the feature maps after the block, keeping the strongest (max) or the mean (average) response in "
    "each 2×2 patch: less to compute, more tolerance of small shifts.",
    "dropout": "During training, switches off this fraction of the outputs at random, so the network cannot rely on any "
    "one of them: a guard against overfitting. Off when predicting.",
    "batch_norm": "Rescales each convolution's outputs to a steady range during training: usually faster, steadier "
    "learning, and it allows higher learning rates.",
    "head_pooling": "How the last feature maps become one vector for the dense layers: Flatten keeps every position "
    "(many weights); global average or max pooling keeps one number per filter (few weights, any image size).",
    "dense_layers": "Fully connected layers between the feature vector and the output layer (which always has one unit "
    "per class, with softmax).",
    "units": "How many neurons this dense layer has.",
    "epochs": "One epoch is one pass over all the training images. More epochs learn more, until the model starts "
    "memorising (watch the validation curve).",
    "learning_rate": "How big a step the optimizer takes after each batch. Too big: the loss jumps or explodes; too "
    "small: learning crawls. 0.001 suits Adam.",
    "batch_size": "How many images the network sees before each update of its weights. Larger batches run faster per "
    "image but update less often.",
    "optimizer": "The rule that turns the gradient into weight updates. Adam adapts its step per weight and is a safe "
    "default; SGD with momentum can generalise a little better with a schedule.",
    "validation_split": "The part of the training images held back to check the model on images it does not train on, after each epoch.",
}

__all__ = ["HELP"]
