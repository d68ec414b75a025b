"""mnist-clip: watch exploding and vanishing gradients, and what clipping does about them."""

__version__ = "0.1.0"
