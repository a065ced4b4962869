"""Batched K-attempt sampling. An episode is one token sequence with a mask per attempt.

    [prompt] [attempt 1] [instruction] [attempt 2] ... [attempt K]

Only attempt tokens are ever marked; prompt, instruction and padding never enter a loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import inspect

import torch
from transformers import DynamicCache

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


def pack(dialogue: Dialogue, prompts: Sequence[str], attempts: Sequence[Sequence[list[int]]],
         instruction: str, rewards: torch.Tensor | None = None) -> Episodes:
    """Lay out prompt, attempts and instruction turns into right-padded sequences."""
    rows, masks = [], []
    num_attempts = len(attempts[0])
    for prompt, atts in zip(prompts, attempts):
        ids = dialogue.first_turn(prompt)
        spans = []
        for k, att in enumerate(atts):
            if k:
                ids = ids + dialogue.next_turn(instruction)
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


def _pick(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    if sampling.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1:
        sorted_probs, order = probs.sort(-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        drop = sorted_probs.cumsum(-1) - sorted_probs >= sampling.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _cache_kwarg(model) -> str:
    # transformers renamed `past_key_values` to `cache`; accept both versions (a peft
    # model forwards keyword arguments to the model it wraps).
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


@torch.no_grad()
def sample(model, contexts: Sequence[list[int]], sampling: SamplingConfig, eos_id: int, pad_id: int,
           generator: torch.Generator | None = None) -> list[list[int]]:
    """Continue each context until eos or max_new_tokens, with a KV cache.

    Contexts are left-padded; a finished row is fed padding (masked out) until all stop.
    Returned continuations include their eos when one was produced.
    """
    device = next(model.parameters()).device
    batch, width = len(contexts), max(map(len, contexts))
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for i, ctx in enumerate(contexts):
        ids[i, width - len(ctx):] = torch.tensor(ctx)
        mask[i, width - len(ctx):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = {_cache_kwarg(model): DynamicCache(), "use_cache": True}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1, **cache).logits[:, -1]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    out = []
    next_pos = positions[:, -1:] + 1
    for _ in range(sampling.max_new_tokens):
        token = _pick(logits, sampling, generator).to(device)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        out.append(token)
        mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
        done = done | (token == eos_id)
        if bool(done.all()):
            break
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos, **cache).logits[:, -1]
        next_pos = next_pos + 1
    new = torch.stack(out, dim=1).tolist()
    result = []
    for row in new:
        cut = row.index(eos_id) + 1 if eos_id in row else len(row)
        result.append(row[:cut])
    return result


def rollout(model, dialogue: Dialogue, task: Task, problems: Sequence[Problem], num_attempts: int,
            sampling: SamplingConfig, generator: torch.Generator | None = None) -> Episodes:
    """Sample attempts 1..K for each problem (all rows in one batch) and score each attempt."""
    contexts = [dialogue.first_turn(p.prompt) for p in problems]
    attempts: list[list[list[int]]] = [[] for _ in problems]
    for k in range(num_attempts):
        if k:
            turn = dialogue.next_turn(task.instruction)
            contexts = [ctx + atts[-1] + turn for ctx, atts in zip(contexts, attempts)]
        for atts, new in zip(attempts, sample(model, contexts, sampling, dialogue.eos_id,
                                               dialogue.pad_id, generator)):
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
