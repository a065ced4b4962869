"""Models: the embedded tiny base model (pretrained here, cached) and any Hugging Face causal LM."""

from .hf import LoraSettings, add_lora, frozen_reference, load_model, needs_reference_copy
from .tiny import TinyModelConfig, load_or_pretrain

__all__ = ["TinyModelConfig", "load_or_pretrain", "LoraSettings", "add_lora", "frozen_reference", "load_model",
           "needs_reference_copy"]
