"""The net: one value built from the config (nn.net), one module per layer kind (dense, recurrent,
lstm), and the TensorFlow side that initialises and runs it (nn.model)."""

from mnist_clip.nn.dense import NORMS, Dense
from mnist_clip.nn.layer import (
    BATCH_NORM_MOMENTUM, NORM_EPSILON, N_CLASSES, N_INPUTS, N_ROWS, ROW_WIDTH, ForwardRecord, LayerKind, Tensor)
from mnist_clip.nn.lstm import LSTM
from mnist_clip.nn.net import MODEL_DEFAULTS, MODELS, RECURRENT_HIDDEN, RECURRENT_KINDS, REFERENCE_HIDDEN, Net, role_of
from mnist_clip.nn.recurrent import SimpleRecurrent

__all__ = ["BATCH_NORM_MOMENTUM", "Dense", "ForwardRecord", "LSTM", "LayerKind", "MODELS", "MODEL_DEFAULTS", "NORMS", "N_CLASSES",
           "NORM_EPSILON", "N_INPUTS", "N_ROWS", "Net", "RECURRENT_HIDDEN", "RECURRENT_KINDS", "REFERENCE_HIDDEN", "ROW_WIDTH", "SimpleRecurrent",
           "Tensor", "role_of"]
