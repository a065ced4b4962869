"""Batched K-attempt sampling. An episode is one token sequence with a mask per attempt.

    [prompt] [attempt 1] [instruction] [attempt 2] ... [attempt K]

Only attempt tokens are ever marked; prompt, instruction and padding never enter a loss.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import inspect

import torch
from torch.distributed.fsdp import FSDPModule
from transformers import CompileConfig, DynamicCache, StaticCache

from .config import check
from .dialogue import Dialogue
from .tasks import Problem, Task
from .tasks.base import batch_rewards


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 32  # per attempt

    def __post_init__(self):
        check(self.temperature >= 0, "temperature", "must be >= 0")
        check(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        check(self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")


GREEDY = SamplingConfig(temperature=0.0)


@dataclass
class Episodes:
    tokens: torch.Tensor  # [B, L] long, right-padded
    attention_mask: torch.Tensor  # [B, L] long
    attempt_mask: torch.Tensor  # [B, K, L] bool: token j was generated in attempt k
    attempts: list[list[list[int]]]  # [B][K] generated ids
    rewards: torch.Tensor  # [B, K] float
    answers: list[list[str | None]] | None = None  # [B][K] final answers, when scored by a task

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def num_attempts(self) -> int:
        return self.attempt_mask.shape[1]

    def without_attempt(self, k: int) -> "Episodes":
        """The same episodes with attempt k out of every loss (its tokens stay as context)."""
        mask = self.attempt_mask.clone()
        mask[:, k] = False
        return dataclasses.replace(self, attempt_mask=mask)

    def select(self, idx: slice | torch.Tensor) -> "Episodes":
        """A sub-batch (for micro-batching), trimmed of columns that are padding in all rows."""
        if isinstance(idx, slice):
            idx = torch.arange(len(self))[idx]
        length = int(self.attention_mask[idx].sum(-1).max()) if len(idx) else 0
        return Episodes(
            tokens=self.tokens[idx, :length],
            attention_mask=self.attention_mask[idx, :length],
            attempt_mask=self.attempt_mask[idx, :, :length],
            attempts=[self.attempts[i] for i in idx.tolist()],
            rewards=self.rewards[idx],
            answers=None if self.answers is None else [self.answers[i] for i in idx.tolist()],
        )


def micro_batches(lengths: torch.Tensor, max_episodes: int, max_tokens: int = 0) -> list[torch.Tensor]:
    """Split a batch into micro-batches of episodes of similar length.

    Episodes are sorted by length, longest first, and a micro-batch grows while it holds
    at most `max_episodes` rows and (when `max_tokens` > 0) its padded size, rows times
    its longest row, stays within `max_tokens`. Returns the episode indices of each.
    """
    order = torch.argsort(lengths, descending=True, stable=True).tolist()
    batches, current = [], []
    for i in order:
        longest = int(lengths[current[0]]) if current else int(lengths[i])
        if current and (len(current) == max_episodes or (max_tokens and (len(current) + 1) * longest > max_tokens)):
            batches.append(torch.tensor(current))
            current = []
        current.append(i)
    if current:
        batches.append(torch.tensor(current))
    return batches


def pack(dialogue: Dialogue, prompts: Sequence[str], attempts: Sequence[Sequence[list[int]]],
         instruction: str, rewards: torch.Tensor | None = None) -> Episodes:
    """Lay out prompt, attempts and instruction turns into right-padded sequences."""
    rows, masks = [], []
    num_attempts = len(attempts[0])
    # tokenized once: a batch repeats each prompt n times and the instruction in every row
    firsts, turn = {p: dialogue.first_turn(p) for p in dict.fromkeys(prompts)}, dialogue.next_turn(instruction)
    for prompt, atts in zip(prompts, attempts):
        ids = firsts[prompt]
        spans = []
        for k, att in enumerate(atts):
            if k:
                ids = ids + turn
            spans.append((len(ids), len(ids) + len(att)))
            ids = ids + list(att)
        rows.append(ids)
        masks.append(spans)
    length = max(map(len, rows))
    tokens = torch.full((len(rows), length), dialogue.pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    attempt_mask = torch.zeros((len(rows), num_attempts, length), dtype=torch.bool)
    for i, (ids, spans) in enumerate(zip(rows, masks)):
        tokens[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        for k, (start, end) in enumerate(spans):
            attempt_mask[i, k, start:end] = True
    if rewards is None:
        rewards = torch.zeros(len(rows), num_attempts)
    return Episodes(tokens, attention, attempt_mask, [list(map(list, a)) for a in attempts], rewards)


def _pick(logits: torch.Tensor, sampling: SamplingConfig, uniform: torch.Tensor | None) -> torch.Tensor:
    """Greedy, or inverse-CDF sampling driven by one uniform number per row.

    A row's token is a function of its logits and its own uniform, so the sample does not
    depend on which other rows share the batch (sharding across processes, dropping
    finished rows).
    """
    if sampling.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    order = None
    if sampling.top_p < 1:
        probs, order = probs.sort(-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        probs = probs.masked_fill(probs.cumsum(-1) - probs >= sampling.top_p, 0.0)
    cdf = probs.cumsum(-1)
    target = (uniform.to(cdf.device) * cdf[:, -1])[:, None]
    index = torch.searchsorted(cdf, target, right=True).clamp(max=cdf.shape[-1] - 1)
    return (index if order is None else order.gather(-1, index)).squeeze(-1)


def _transformers_model(model):
    """The transformers model inside a DDP wrapper and/or a peft model."""
    inner = getattr(model, "module", model)
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner


def _cache_kwarg(model) -> str:
    # transformers renamed `past_key_values` to `cache`; accept both versions (a peft
    # model forwards keyword arguments to the model it wraps).
    return "cache" if "cache" in inspect.signature(_transformers_model(model).forward).parameters else "past_key_values"


def _left_pad(contexts: Sequence[list[int]], pad_id: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(contexts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(contexts), width), dtype=torch.long)
    for i, ctx in enumerate(contexts):
        ids[i, width - len(ctx):] = torch.tensor(ctx)
        mask[i, width - len(ctx):] = 1
    return ids.to(device), mask.to(device)


def _cut(rows: list[list[int]], eos_id: int) -> list[list[int]]:
    return [row[: row.index(eos_id) + 1] if eos_id in row else row for row in rows]


@torch.no_grad()
def sample(model, contexts: Sequence[list[int]], sampling: SamplingConfig, eos_id: int, pad_id: int,
           generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None) -> list[list[int]]:
    """Continue each context until eos or max_new_tokens, with a KV cache.

    Random numbers: `uniforms` [B, max_new_tokens] when given (a shard of a larger batch),
    else drawn from `generator`. On CUDA a static cache with a compiled decoding step is
    used (`static_decode`); elsewhere a dynamic cache from which finished rows are dropped.
    Returned continuations include their eos when one was produced.
    """
    if sampling.temperature > 0 and uniforms is None:
        uniforms = torch.rand(len(contexts), sampling.max_new_tokens, generator=generator)
    device = next(model.parameters()).device
    decode = _static_decode if device.type == "cuda" and _static_ok(model) else _dynamic_decode
    return _cut(decode(model, contexts, sampling, eos_id, pad_id, uniforms, device), eos_id)


def _dynamic_decode(model, contexts, sampling, eos_id, pad_id, uniforms, device) -> list[list[int]]:
    """Left-padded batch; rows that finished are dropped from the batch and the cache."""
    uniforms = None if uniforms is None else uniforms.to(device)
    ids, mask = _left_pad(contexts, pad_id, max(map(len, contexts)), device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    kwargs = {_cache_kwarg(model): cache, "use_cache": True}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1, **kwargs).logits[:, -1]
    out = [[] for _ in contexts]
    live = torch.arange(len(contexts))  # original row of each batch row
    next_pos = positions[:, -1:] + 1
    for t in range(sampling.max_new_tokens):
        token = _pick(logits, sampling, None if uniforms is None else uniforms[live.to(device), t]).to(device)
        for row, tok in zip(live.tolist(), token.tolist()):
            out[row].append(tok)
        keep = (token != eos_id).cpu()
        if not keep.any() or t + 1 == sampling.max_new_tokens:
            break
        if not keep.all():
            cache.batch_select_indices(keep.nonzero().squeeze(-1).to(device))
            here = keep.to(device)
            live, token, mask, next_pos = live[keep], token[here], mask[here], next_pos[here]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos, **kwargs).logits[:, -1]
        next_pos = next_pos + 1
    return out


def _static_ok(model) -> bool:
    # Not under FSDP: its weights are gathered into fresh memory each step, under CUDA graphs
    # recorded at fixed addresses (untested, so the dynamic cache is used there).
    return (bool(getattr(_transformers_model(model), "_can_compile_fullgraph", False))
            and not hasattr(model, "peft_config") and not isinstance(model, FSDPModule))


_LENGTH_BUCKET, _BATCH_BUCKET = 256, 32  # shapes are rounded up so few graphs serve a whole run


def _static_decode(model, contexts, sampling, eos_id, pad_id, uniforms, device, compile: bool = True) -> list[list[int]]:
    """Static KV cache and a compiled (CUDA-graph) decoding step.

    Batch and cache length are rounded up to buckets (extra rows repeat the first context
    and are dropped), so the compile warm-up is paid once per bucket and the cache is
    reused across calls. Shapes stay fixed, so rows run until all have stopped.
    """
    rows = len(contexts)
    contexts = list(contexts) + [contexts[0]] * (-rows % _BATCH_BUCKET)
    if uniforms is not None:
        uniforms = torch.cat([uniforms, uniforms[:1].expand(len(contexts) - rows, -1)]).to(device)
    width = max(map(len, contexts))
    length = -(-(width + sampling.max_new_tokens) // _LENGTH_BUCKET) * _LENGTH_BUCKET
    ids, prompt_mask = _left_pad(contexts, pad_id, width, device)
    mask = torch.ones((len(contexts), length), dtype=torch.long, device=device)
    mask[:, :width] = prompt_mask  # later slots are filled in order; the causal mask hides unwritten ones
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = {_cache_kwarg(model): _static_cache(model, len(contexts), length), "use_cache": True}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache_position=torch.arange(width, device=device),
                   logits_to_keep=1, **kwargs).logits[:, -1]
    forward = _compiled_forward(model, compile)
    done = torch.zeros(len(contexts), dtype=torch.bool, device=device)
    out, next_pos = [], positions[:, -1:] + 1
    for t in range(sampling.max_new_tokens):
        token = _pick(logits, sampling, None if uniforms is None else uniforms[:, t])
        token = torch.where(done, torch.full_like(token, pad_id), token)
        out.append(token)
        done = done | (token == eos_id)
        if t + 1 == sampling.max_new_tokens or (t % 8 == 7 and bool(done.all())):  # a sync every 8 tokens
            break
        logits = forward(input_ids=token[:, None].clone(), attention_mask=mask, position_ids=next_pos.clone(),
                         cache_position=torch.tensor([width + t], device=device), **kwargs).logits[:, -1].clone()
        next_pos = next_pos + 1
    return torch.stack(out, dim=1)[:rows].tolist()


def _static_cache(model, batch: int, length: int) -> StaticCache:
    """One static cache per (batch, length), kept on the model and zeroed for reuse (CUDA graphs
    replay on fixed addresses)."""
    inner = _transformers_model(model)
    caches = inner.__dict__.setdefault("_selfcorrect_caches", {})
    if (batch, length) not in caches:
        caches[(batch, length)] = StaticCache(config=inner.config, max_cache_len=length)
    cache = caches[(batch, length)]
    cache.reset()
    return cache


def _compiled_forward(model, compile: bool):
    """The model's forward compiled once (transformers keeps it on the model), or plain."""
    if not compile:
        return model
    inner = _transformers_model(model)
    return inner.get_compiled_call(CompileConfig(fullgraph=False, dynamic=False, mode="reduce-overhead"))


def rollout(model, dialogue: Dialogue, task: Task, problems: Sequence[Problem], num_attempts: int,
            sampling: SamplingConfig, generator: torch.Generator | None = None, shard: slice = slice(None),
            given: Sequence[Sequence[list[int]]] | None = None) -> Episodes:
    """Sample attempts 1..K for each problem (all rows in one batch) and score each attempt.

    `shard` picks this process's rows when the batch is split across processes. The random
    numbers are drawn for the whole batch, so a row's sample does not depend on the split.
    `given` holds the first attempts of each row (of the shard) when they come from elsewhere.
    """
    total = len(problems)
    problems = list(problems)[shard]
    firsts, turn = [dialogue.first_turn(p.prompt) for p in problems], dialogue.next_turn(task.instruction)
    attempts: list[list[list[int]]] = [list(map(list, g)) for g in given] if given else [[] for _ in problems]
    for k in range(len(attempts[0]) if attempts else 0, num_attempts):
        contexts = [first + [t for att in atts for t in att + turn] for first, atts in zip(firsts, attempts)]
        uniforms = None
        if sampling.temperature > 0:
            uniforms = torch.rand(total, sampling.max_new_tokens, generator=generator)[shard]
        for atts, new in zip(attempts, sample(model, contexts, sampling, dialogue.eos_id, dialogue.pad_id,
                                               uniforms=uniforms)):
            atts.append(new)
    texts = [[dialogue.decode(a) for a in atts] for atts in attempts]
    flat = batch_rewards(task, [p for p in problems for _ in range(num_attempts)], [t for row in texts for t in row])
    rewards = torch.tensor(flat, dtype=torch.float).view(len(problems), num_attempts)
    episodes = pack(dialogue, [p.prompt for p in problems], attempts, task.instruction, rewards)
    episodes.answers = [[task.answer(t) for t in row] for row in texts]
    return episodes


def token_logprobs(model, episodes: Episodes) -> torch.Tensor:
    """log p(token_j | tokens_<j) at every position j ([B, L]; position 0 is 0)."""
    device = next(model.parameters()).device
    tokens = episodes.tokens.to(device)
    mask = episodes.attention_mask.to(device)
    logits = model(input_ids=tokens, attention_mask=mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    return torch.nn.functional.pad(logp, (1, 0))
