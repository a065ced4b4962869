"""Models: the embedded tiny base model (pretrained here, cached)."""

from .tiny import TinyModelConfig, load_or_pretrain

__all__ = ["TinyModelConfig", "load_or_pretrain"]
