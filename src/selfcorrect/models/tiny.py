"""The embedded base model: a small Llama built from a config, with a word-level tokenizer
fitted to the task, pretrained here on the task's base-model dialogues, and cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from ..config import check
from ..dialogue import PlainDialogue
from ..objectives import sft_loss
from ..rollout import pack, token_logprobs
from ..tasks.modroot import ModRootConfig, ModRootTask
from .hf import transformers_bars, usable_device

SPECIAL = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
_FORMAT_VERSION = 5  # bump when pretraining changes, so stale caches are not reused (5: one thread)


@dataclass(frozen=True)
class TinyModelConfig:
    hidden_size: int = 64
    layers: int = 3
    heads: int = 4
    intermediate_size: int = 192
    pretrain_steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self):
        for name in ("hidden_size", "layers", "heads", "intermediate_size", "pretrain_steps", "batch_size"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.hidden_size % self.heads == 0, "heads", "must divide hidden_size")
        check(self.lr > 0, "lr", "must be > 0")


def fit_tokenizer(task: ModRootTask, demos: list[tuple[str, list[str]]]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is the words of the task's dialogues, plus the
    instruction as one token: its text is the paper's, but the tiny model reads it as a single
    marker (31 words would be a third of every episode's tokens, and of its compute)."""
    core = Tokenizer(models.WordLevel(unk_token=SPECIAL["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    texts = [p + " " + " ".join(attempts) for p, attempts in demos]
    core.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL.values())))
    core.add_tokens([AddedToken(task.instruction, normalized=False)])
    return PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL)


def build_model(config: TinyModelConfig, tokenizer: PreTrainedTokenizerFast, max_length: int = 256) -> LlamaForCausalLM:
    torch.manual_seed(config.seed)
    arch = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=max_length, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    return LlamaForCausalLM(arch)


def _cache_key(task: ModRootConfig, model: TinyModelConfig) -> str:
    blob = json.dumps([_FORMAT_VERSION, dataclasses.asdict(task), dataclasses.asdict(model)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get("SELFCORRECT_CACHE", Path.home() / ".cache" / "selfcorrect"))


@contextmanager
def one_thread():
    """Torch computes on one CPU thread inside (also as a decorator). Its float rounding depends
    on the thread count, so without this the base model, and every run after it, would depend
    on how many cores the machine has (or how many runs share it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@one_thread()
def pretrain(task: ModRootTask, config: TinyModelConfig, progress: bool = True, device: str = "cpu"):
    """Next-token training on the task's base-model dialogues (loss on attempt tokens)."""
    rng = random.Random(config.seed)
    tokenizer = fit_tokenizer(task, [task.demonstration(rng) for _ in range(2000)])
    dialogue = PlainDialogue(tokenizer)
    model = build_model(config, tokenizer).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    warmup = max(1, config.pretrain_steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / config.pretrain_steps)))
    model.train()
    bar = tqdm(range(config.pretrain_steps), desc="pretraining base model", disable=not progress, leave=False)
    for _ in bar:
        demos = [task.demonstration(rng) for _ in range(config.batch_size)]
        texts = [a for _, atts in demos for a in atts]
        ids = iter(tokenizer(texts, add_special_tokens=False)["input_ids"])  # one batched call: fast
        attempts = [[next(ids) + [dialogue.eos_id] for _ in atts] for _, atts in demos]
        episodes = pack(dialogue, [p for p, _ in demos], attempts, task.instruction)
        logp = token_logprobs(model, episodes)
        loss = sft_loss(logp, episodes.attempt_mask.to(logp.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model, tokenizer


def load_or_pretrain(task: ModRootTask, config: TinyModelConfig | None = None, cache_dir: str | Path | None = None,
                     progress: bool = True, device: str = "cpu"):
    """The cached base model for (task config, model config), pretraining it on first use (on `device`)."""
    config = config or TinyModelConfig()
    device = usable_device(device)
    folder = Path(cache_dir or default_cache_dir()) / f"tiny-{_cache_key(task.config, config)}"
    with transformers_bars(progress):
        if not (folder / "config.json").exists():
            model, tokenizer = pretrain(task, config, progress, device)
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            try:
                tmp.rename(folder)  # atomic: a crash never leaves a half-written cache entry
            except OSError:  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
        model = AutoModelForCausalLM.from_pretrained(folder).to(device)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    model.eval()
    return model, tokenizer
