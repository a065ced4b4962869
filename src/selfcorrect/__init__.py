"""selfcorrect: train language models to correct their own mistakes with multi-turn RL (SCoRe)."""

import importlib

__version__ = "0.1.0"

# Loaded on first use (PEP 562): `import selfcorrect.cli` stays light, so the command can
# catch Ctrl-C while torch and transformers import.
_EXPORTS = {
    "PlainDialogue": "dialogue", "correction_metrics": "evaluate", "evaluate": "evaluate",
    **{name: "objectives" for name in ("naive_multi_turn", "pair_sft", "policy_loss", "rloo_advantages",
                                       "shaped_returns", "single_turn", "stage_one", "stage_two", "star")},
    "Episodes": "rollout", "SamplingConfig": "rollout", "rollout": "rollout", "TrainConfig": "trainer", "train": "trainer",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'selfcorrect' has no attribute '{name}'")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__():
    return sorted([*globals(), *_EXPORTS])
