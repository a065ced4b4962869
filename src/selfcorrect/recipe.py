"""`selfcorrect train` on a pretrained model and a real task (math or code), from one YAML file.

    model: {name: smollm2, dtype: null, device: null, lora: {rank: 16, alpha: 32}}
    math: {dataset: gsm8k}          # or code: {dataset: mbpp}
    train: {method: score, steps: ..., ...}

A config with a `math:` or `code:` section is a recipe; any other config trains on the
embedded task (see experiment.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import check
from .models.hf import LoraSettings
from .tasks import CodeTask, CodeTaskConfig, MathTask, MathTaskConfig
from .trainer import TrainConfig


@dataclass(frozen=True)
class ModelSpec:
    name: str  # a hub id, a local folder, a .gguf file, or an alias (smollm2)
    dtype: str | None = None  # default: bf16 on CUDA, fp32 on CPU
    device: str | None = None  # default: cuda when available
    lora: LoraSettings | None = None  # None: full fine-tuning


@dataclass(frozen=True)
class Recipe:
    model: ModelSpec
    math: MathTaskConfig | None = None
    code: CodeTaskConfig | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        check((self.math is None) != (self.code is None), "math", "give exactly one of the sections math and code")
        check(self.code is None or self.code.dataset == "mbpp", "code.dataset",
              "training needs a train split: mbpp (HumanEval is evaluation only)")

    def task(self):
        return MathTask(self.math) if self.math is not None else CodeTask(self.code)


def is_recipe(data: dict) -> bool:
    return "math" in data or "code" in data
