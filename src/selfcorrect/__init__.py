"""selfcorrect: train language models to correct their own mistakes with multi-turn RL (SCoRe)."""

from .dialogue import PlainDialogue
from .evaluate import correction_metrics, evaluate
from .objectives import (naive_multi_turn, pair_sft, policy_loss, rloo_advantages, shaped_returns, single_turn,
                         stage_one, stage_two, star)
from .rollout import Episodes, SamplingConfig, rollout
from .trainer import TrainConfig, train

__version__ = "0.1.0"
__all__ = ["PlainDialogue", "correction_metrics", "evaluate", "naive_multi_turn", "policy_loss", "rloo_advantages",
           "shaped_returns", "single_turn", "stage_one", "stage_two", "star", "pair_sft", "Episodes", "SamplingConfig", "rollout",
           "TrainConfig", "train"]
