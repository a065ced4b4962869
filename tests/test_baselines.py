"""The supervised baselines: which traces STaR keeps, how Pair-SFT pairs, and that they train."""

import copy
import json
import random

import pytest
import torch

from selfcorrect.objectives import pair_sft, pair_sft_pairs, sft_loss, star, star_keep
from selfcorrect.rollout import SamplingConfig
from selfcorrect.trainer import TrainConfig, stages, train

# (r1, r2) of six traces: wrong->right, right->right, right->wrong, wrong->wrong, wrong->right, right->right
TRACES = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def test_star_keeps_wrong_to_right_and_with_plus_right_to_right():
    assert star_keep(TRACES, plus=False).tolist() == [True, False, False, False, True, False]
    assert star_keep(TRACES, plus=True).tolist() == [True, True, False, False, True, True]


def test_pair_sft_pairs_wrong_with_right_of_the_same_problem():
    # three problems x three first attempts: (W R R), (W W W), (R W R)
    rewards = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    pairs = pair_sft_pairs(rewards, group_size=3, plus=False, rng=random.Random(0))
    assert sorted(i for i, _ in pairs) == [0, 7]  # every wrong sample of a problem that has a right one
    assert all(rewards[j] == 1 and i // 3 == j // 3 for i, j in pairs)
    plus = pair_sft_pairs(rewards, group_size=3, plus=True, rng=random.Random(0))
    right_right = [(i, j) for i, j in plus if rewards[i] == 1]
    assert sorted(i for i, _ in right_right) == [1, 2, 6, 8]
    assert all(rewards[j] == 1 and j != i and i // 3 == j // 3 for i, j in right_right)
    # a lone right answer is paired with itself
    assert pair_sft_pairs(torch.tensor([1.0, 0.0]), 2, True, random.Random(0)) == [(1, 0), (0, 0)]


def test_sft_loss_trains_only_the_selected_attempts():
    logp = (-torch.rand(2, 6)).requires_grad_(True)
    mask = torch.zeros(2, 2, 6, dtype=torch.bool)
    mask[:, 0, 1:3], mask[:, 1, 4:6] = True, True
    sft_loss(logp, mask, star().train).backward()
    assert (logp.grad[:, 1:3] == 0).all() and (logp.grad[:, 4:6] == -1 / 4).all()
    assert (logp.grad[:, [0, 3]] == 0).all()
    assert pair_sft().train == (False, True) and star(train_first=True).train == (True, True)


@pytest.fixture(scope="module")
def coin_task(task):
    """A reward a random model earns half the time, so every selection keeps something."""
    coin = copy.copy(task)
    coin.reward = lambda problem, response: float(len(response.split()) % 2 == 0)
    return coin


@pytest.mark.parametrize("method", ["star", "star_plus", "pair_sft", "pair_sft_plus", "score_star"])
def test_supervised_methods_train_and_resume_exactly(method, tiny_model, dialogue, coin_task, tmp_path):
    config = TrainConfig(method=method, steps=4, stage1_steps=2, problems_per_step=3, samples_per_problem=3,
                         micro_batch=4, checkpoint_every=2, star_round_steps=3, lr=1e-2,
                         sampling=SamplingConfig(max_new_tokens=6))
    assert sum(n for _, n in stages(config)) == 4
    straight = train(copy.deepcopy(tiny_model), dialogue, coin_task, config, tmp_path / "a", progress=False)
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["trained_episodes"] for r in rows) > 0
    assert any(not torch.equal(a, b) for a, b in zip(tiny_model.state_dict().values(),
                                                     straight.state_dict().values()))

    def crash(step, model):
        if step == 2:
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        train(copy.deepcopy(tiny_model), dialogue, coin_task, config, tmp_path / "b", on_checkpoint=crash,
              progress=False)
    resumed = train(copy.deepcopy(tiny_model), dialogue, coin_task, config, tmp_path / "b", resume=True,
                    progress=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("method, kept", [("pair_sft", 4), ("star", 4), ("score_star", 4), ("naive", 2)])
def test_the_kept_checkpoint_is_scored_only_by_its_own_samples(method, kept, tiny_model, dialogue, coin_task,
                                                               tmp_path):
    """A training reward that falls after the first checkpoint: an RL run keeps the earlier weights, which
    earned it; a run ending in a supervised stage keeps its last, since other weights (the base for
    Pair-SFT, the round's snapshot for STaR) sampled the rewards of that stage."""
    high = [True]
    falling = copy.copy(coin_task)
    falling.reward = lambda problem, response: float(high[0])
    config = TrainConfig(method=method, steps=4, stage1_steps=2, problems_per_step=2, samples_per_problem=2,
                         checkpoint_every=2, star_round_steps=2, sampling=SamplingConfig(max_new_tokens=4))
    train(copy.deepcopy(tiny_model), dialogue, falling, config, tmp_path, progress=False,
          on_checkpoint=lambda step, model: high.__setitem__(0, False))
    assert torch.load(tmp_path / "best.pt", weights_only=False)["step"] == kept
