"""kling-batch: run overnight batches of Kling image-to-video on Novita, and rerun failures."""

__version__ = "0.1.0"
