"""The objectives route gradients exactly as the paper's stages say."""

import pytest
import torch

from selfcorrect.objectives import (kl_per_token, naive_multi_turn, policy_loss, rloo_advantages, shaped_returns,
                                    single_turn, stage_one, stage_two)

# Two problems x two samples; each sequence: 2 prompt tokens, attempt 1 (2 tokens),
# 1 instruction token, attempt 2 (2 tokens), then padding.
L = 9
PROMPT, ATT1, INSTR, ATT2, PAD = [0, 1], [2, 3], [4], [5, 6], [7, 8]


def masks(batch=4):
    m = torch.zeros(batch, 2, L, dtype=torch.bool)
    m[:, 0, ATT1] = True
    m[:, 1, ATT2] = True
    return m


def leaf(seed):
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(4, L, generator=g) * 3).requires_grad_(True)
    ref = -torch.rand(4, L, generator=g) * 3
    return logp, ref


REWARDS = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])


def grad_of(objective, rewards=REWARDS, seed=0):
    logp, ref = leaf(seed)
    adv = rloo_advantages(shaped_returns(rewards, objective.alpha), group_size=2)
    loss, _ = policy_loss(logp, ref, masks(), adv, objective)
    loss.backward()
    return logp.grad, logp.detach(), ref, adv


def kl_grad(logp, ref):
    """d k3 / d logp = 1 - exp(ref - logp)."""
    return 1 - torch.exp(ref - logp)


def test_rloo_is_per_attempt_leave_one_out():
    returns = torch.tensor([[0.0, 5.0], [1.0, 1.0], [3.0, 0.0], [2.0, 4.0], [1.0, 2.0], [0.0, 0.0]])
    adv = rloo_advantages(returns, group_size=3)
    # sample 0 of group 0, attempt 2: 5 - mean(1, 0)
    assert adv[0, 1].item() == pytest.approx(5 - 0.5)
    # attempt 1 of sample 4 (group 1): 1 - mean(2, 0)
    assert adv[4, 0].item() == pytest.approx(0.0)
    for g in range(2):
        expected = returns[3 * g:3 * g + 3] - (returns[3 * g:3 * g + 3].sum(0) - returns[3 * g:3 * g + 3]) / 2
        assert torch.allclose(adv[3 * g:3 * g + 3], expected)
    with pytest.raises(ValueError):
        rloo_advantages(returns, group_size=1)


def test_shaped_returns_bonus():
    r = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert shaped_returns(r, 10.0).tolist() == [[0, 11], [1, -10], [1, 1], [0, 0]]
    assert torch.equal(shaped_returns(r, 0.0), r)


def test_stage_one_reward_reaches_attempt_two_only():
    beta1, beta2 = 0.01, 0.1
    grad, logp, ref, adv = grad_of(stage_one(beta1, beta2))
    n = 4
    # Attempt 1: only the beta2 KL gradient, whatever the rewards.
    assert torch.allclose(grad[:, ATT1], beta2 * kl_grad(logp, ref)[:, ATT1] / n)
    # Attempt 2: its own advantage plus the beta1 KL gradient.
    expected2 = -adv[:, 1:2] / n + beta1 * kl_grad(logp, ref)[:, ATT2] / n
    assert torch.allclose(grad[:, ATT2], expected2)
    # Prompt, instruction and padding: nothing.
    assert torch.all(grad[:, PROMPT + INSTR + PAD] == 0)
    # Changing attempt-1 rewards leaves the attempt-1 gradient unchanged.
    other = REWARDS.clone()
    other[:, 0] = 1 - other[:, 0]
    grad_b, *_ = grad_of(stage_one(beta1, beta2), rewards=other)
    assert torch.allclose(grad_b[:, ATT1], grad[:, ATT1])


def test_stage_two_weights_each_attempt_by_its_own_shaped_return():
    beta1, alpha = 0.01, 10.0
    grad, logp, ref, adv = grad_of(stage_two(beta1, alpha))
    n = 4
    returns = torch.tensor([[0.0, 11.0], [1.0, 1.0], [0.0, 0.0], [1.0, -10.0]])  # r2 + alpha (r2 - r1)
    expected_adv = torch.tensor([[0 - 1, 11 - 1], [1 - 0, 1 - 11], [0 - 1, 0 + 10], [1 - 0, -10 - 0]]).float()
    assert torch.allclose(shaped_returns(REWARDS, alpha), returns)
    assert torch.allclose(adv, expected_adv)
    assert torch.allclose(grad[:, ATT1], -adv[:, 0:1] / n + beta1 * kl_grad(logp, ref)[:, ATT1] / n)
    assert torch.allclose(grad[:, ATT2], -adv[:, 1:2] / n + beta1 * kl_grad(logp, ref)[:, ATT2] / n)
    assert torch.all(grad[:, PROMPT + INSTR + PAD] == 0)


def test_naive_is_stage_two_without_bonus():
    g_naive, *_ = grad_of(naive_multi_turn(0.01))
    g_s2, *_ = grad_of(stage_two(0.01, 0.0))
    assert torch.allclose(g_naive, g_s2)
    assert not torch.allclose(g_naive, grad_of(stage_two(0.01, 10.0))[0])


def test_single_turn_trains_attempt_one_only():
    logp, ref = leaf(1)
    m = masks()[:, :1]
    adv = rloo_advantages(REWARDS[:, :1], 2)
    loss, _ = policy_loss(logp, ref, m, adv, single_turn(0.01))
    loss.backward()
    assert torch.all(logp.grad[:, ATT2 + PROMPT + INSTR + PAD] == 0)
    assert torch.allclose(logp.grad[:, ATT1], -adv / 4 + 0.01 * kl_grad(logp.detach(), ref)[:, ATT1] / 4)


def test_micro_batches_sum_to_the_full_batch_gradient():
    logp, ref = leaf(2)
    adv = rloo_advantages(REWARDS, 2)
    full, _ = policy_loss(logp, ref, masks(), adv, stage_two(0.01, 10.0))
    full_grad = torch.autograd.grad(full, logp)[0]
    parts = sum(policy_loss(logp[i:i + 2], ref[i:i + 2], masks()[i:i + 2], adv[i:i + 2], stage_two(0.01, 10.0),
                            num_episodes=4)[0] for i in (0, 2))
    assert torch.allclose(torch.autograd.grad(parts, logp)[0], full_grad)


def test_kl_estimate_is_zero_at_reference_and_positive_elsewhere():
    logp = torch.log(torch.tensor([0.5, 0.2, 0.9]))
    assert torch.allclose(kl_per_token(logp, logp), torch.zeros(3))
    assert torch.all(kl_per_token(logp, logp - 0.3) > 0)
