"""The pictures, one family per module, over the shared helpers."""
