"""xmodal-multilabel: an example plugin that adds a task head through ``register_heads``."""

__version__ = "0.1.0"
