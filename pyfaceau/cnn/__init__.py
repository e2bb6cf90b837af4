"""OpenFace's CNN layers (``CNN_utils.cpp``) with machine-independent products, shared by
the MTCNN detector and the landmark detection validator."""

from .layers import (
    conv2d,
    conv_weight_matrix,
    fully_connected,
    max_pool,
    pool_output_size,
    prelu,
    relu,
    sigmoid,
)

__all__ = [
    "conv2d",
    "conv_weight_matrix",
    "fully_connected",
    "max_pool",
    "pool_output_size",
    "prelu",
    "relu",
    "sigmoid",
]
