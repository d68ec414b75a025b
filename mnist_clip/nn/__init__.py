"""The net: one value built from the config (nn.net), one module per layer kind (dense, recurrent,
lstm; the recurrent kinds are registered in nn.net), and the TensorFlow side that initialises and
runs it (nn.model)."""

from mnist_clip.nn.dense import NORMS, Dense
from mnist_clip.nn.layer import (
    BATCH_NORM_MOMENTUM, NORM_EPSILON, N_CLASSES, N_INPUTS, N_ROWS, ROW_WIDTH, ForwardRecord, LayerKind, Tensor)
from mnist_clip.nn.net import MODEL_DEFAULTS, MODELS, RECURRENT_HIDDEN, RECURRENT_KINDS, REFERENCE_HIDDEN, Net, role_of

__all__ = ["BATCH_NORM_MOMENTUM", "Dense", "ForwardRecord", "LayerKind", "MODELS", "MODEL_DEFAULTS", "NORMS", "N_CLASSES",
           "NORM_EPSILON", "N_INPUTS", "N_ROWS", "Net", "RECURRENT_HIDDEN", "RECURRENT_KINDS", "REFERENCE_HIDDEN", "ROW_WIDTH",
           "Tensor", "role_of"]
