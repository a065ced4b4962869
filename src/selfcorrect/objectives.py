"""The objectives, as pure functions of (log-probs, reference log-probs, masks, rewards).

One estimator, REINFORCE with a leave-one-out baseline (RLOO) and a per-token KL to a
frozen reference, covers every method; a method is an `Objective`: which attempts the
reward trains, the KL coefficient of each attempt, and the bonus alpha.

    Stage I      max r(y2) - beta2 KL_1 - beta1 KL_2        attempt 1 only through its KL
    Stage II     max r(y1) + r^(y2) - beta1 (KL_1 + KL_2),  r^(y2) = r2 + alpha (r2 - r1)
    naive        max r(y1) + r(y2) - beta1 (KL_1 + KL_2)
    single-turn  max r(y1) - beta1 KL_1

The KL terms are a loss on the sampled tokens (the k3 estimator, as in GRPO), not a
penalty inside the REINFORCE return (Ahmadian et al.): its value estimates KL(pi || pi_ref)
without bias, and its gradient is that of each sampled prefix's next-token KL(pi_ref || pi):
a pull toward the reference at every sampled position, not the score-function gradient
of the sequence KL(pi || pi_ref).

The supervised baselines are objectives too (`supervised` set): the loop samples
traces, keeps some (`star_keep`, `pair_sft`) and fine-tunes on the trained attempts.

    STaR      sample (y1, y2) from the policy of the current round; keep wrong -> right
              (plus: also right -> right); SFT on y2
    Pair-SFT  sample first attempts from the base; pair a wrong and a right one of the
              same problem as (y1, y2) (plus: also right -> right); SFT on y2
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class Objective:
    name: str
    train: tuple[bool, ...]  # per attempt: does the reward's gradient reach it?
    kl: tuple[float, ...]  # per attempt: KL coefficient
    alpha: float = 0.0  # progress bonus on attempts 2..K
    supervised: Literal["star", "pair"] | None = None  # SFT on selected traces instead of REINFORCE
    plus: bool = False  # supervised: also keep right -> right traces (D+)
    offline_firsts: bool = False  # every other step, attempt 1 comes from the base and is not trained

    @property
    def num_attempts(self) -> int:
        return len(self.train)


def stage_one(beta1: float, beta2: float, attempts: int = 2) -> Objective:
    return Objective("stage1", (False,) + (True,) * (attempts - 1), (beta2,) + (beta1,) * (attempts - 1))


def stage_two(beta1: float, alpha: float, attempts: int = 2, offline_firsts: bool = False) -> Objective:
    """Stage II; `offline_firsts`: every other step, attempt 1 is sampled from the base and only the later
    attempts train on it (the paper's option of base-model first attempts as extra prompts)."""
    return Objective("stage2", (True,) * attempts, (beta1,) * attempts, alpha, offline_firsts=offline_firsts)


def naive_multi_turn(beta1: float, attempts: int = 2) -> Objective:
    return Objective("naive", (True,) * attempts, (beta1,) * attempts)


def single_turn(beta1: float) -> Objective:
    return Objective("single_turn", (True,), (beta1,))


def star(attempts: int = 2, plus: bool = False, train_first: bool = False) -> Objective:
    """STaR on self-correction traces; `train_first` also fits attempt 1 (STaR in Stage II)."""
    return Objective("star_plus" if plus else "star", (train_first,) + (True,) * (attempts - 1),
                     (0.0,) * attempts, supervised="star", plus=plus)


def pair_sft(plus: bool = False) -> Objective:
    return Objective("pair_sft_plus" if plus else "pair_sft", (False, True), (0.0, 0.0), supervised="pair", plus=plus)


def star_keep(rewards: torch.Tensor, plus: bool) -> torch.Tensor:
    """Which traces STaR fine-tunes on: last attempt right, first wrong (or right, with plus). [B] bool"""
    last_right, first_wrong = rewards[:, -1] == 1, rewards[:, 0] == 0
    return last_right & (first_wrong | plus)


def pair_sft_pairs(rewards: torch.Tensor, group_size: int, plus: bool, rng: random.Random) -> list[tuple[int, int]]:
    """Pair-SFT's (attempt 1, attempt 2) pairs among single-attempt samples, within each problem.

    `rewards` is [B] for B = problems * group_size, a problem's samples contiguous. Every
    wrong sample is paired with a right one of its problem (D_SFT); with plus every right
    sample is also paired with another right one, or itself when it is alone (D+_SFT).
    """
    pairs = []
    for start in range(0, len(rewards), group_size):
        group = range(start, start + group_size)
        right = [i for i in group if rewards[i] == 1]
        if not right:
            continue
        pairs += [(i, rng.choice(right)) for i in group if rewards[i] == 0]
        if plus:
            pairs += [(i, rng.choice([j for j in right if j != i] or [i])) for i in right]
    return pairs


def shaped_returns(rewards: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-attempt returns with gamma = 0: r_t + alpha (r_t - r_{t-1}) for t >= 2. [B, K]"""
    returns = rewards.clone()
    returns[:, 1:] += alpha * (rewards[:, 1:] - rewards[:, :-1])
    return returns


def rloo_advantages(returns: torch.Tensor, group_size: int) -> torch.Tensor:
    """Leave-one-out advantages, per attempt, within groups of samples of one problem.

    `returns` is [B, K] with B = problems * group_size, a problem's samples contiguous.
    Sample i's baseline for attempt t is the mean attempt-t return of the other samples.
    """
    if group_size < 2:
        raise ValueError("the leave-one-out baseline needs at least 2 samples per problem")
    batch, attempts = returns.shape
    groups = returns.view(batch // group_size, group_size, attempts)
    baseline = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return (groups - baseline).view(batch, attempts)


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate on sampled tokens (k3: unbiased, >= 0; as a loss, the
    gradient of the next-token KL(pi_ref || pi), see the module's docstring)."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def policy_loss(logp: torch.Tensor, ref_logp: torch.Tensor, attempt_mask: torch.Tensor,
                advantages: torch.Tensor, objective: Objective, num_episodes: int | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """REINFORCE + KL loss summed over tokens of each attempt, averaged over episodes.

    logp, ref_logp: [B, L]; attempt_mask: [B, K, L]; advantages: [B, K].
    `num_episodes` is the size of the whole batch when this is one micro-batch of it.
    """
    mask = attempt_mask.to(logp.dtype)
    seq_logp = (logp[:, None, :] * mask).sum(-1)  # [B, K]
    seq_kl = (kl_per_token(logp, ref_logp.detach())[:, None, :] * mask).sum(-1)  # [B, K]
    train = torch.tensor(objective.train, dtype=logp.dtype, device=logp.device)
    kl_coef = torch.tensor(objective.kl, dtype=logp.dtype, device=logp.device)
    n = num_episodes or logp.shape[0]
    pg = -(train * advantages.detach().to(logp.dtype) * seq_logp).sum() / n
    kl = (kl_coef * seq_kl).sum() / n
    stats = {"pg_loss": pg.detach(), "kl_loss": kl.detach(), "kl": seq_kl.detach().sum(0) / n}
    return pg + kl, stats


def sft_loss(logp: torch.Tensor, attempt_mask: torch.Tensor, train: tuple[bool, ...] | None = None,
             num_tokens: int | None = None) -> torch.Tensor:
    """Supervised negative log-likelihood over the tokens of the trained attempts (all by default).

    `num_tokens` is the trained-token count of the whole batch when this is one micro-batch of it.
    """
    if train is not None:
        attempt_mask = attempt_mask[:, torch.tensor(train)]
    mask = attempt_mask.any(1).to(logp.dtype)
    return -(logp * mask).sum() / (num_tokens or mask.sum().clamp(min=1))
