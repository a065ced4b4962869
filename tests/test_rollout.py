"""Rollout: per-attempt masks, stopping, greedy determinism, K attempts."""

import torch

from selfcorrect.rollout import GREEDY, SamplingConfig, pack, rollout, sample, token_logprobs


def test_pack_marks_only_attempt_tokens(dialogue, task):
    prompts = ["1 x + 2 = 3 mod 10 . x is 1 or 5 .", "3 x + 0 = 9 mod 10 . x is 3 or 4 ."]
    attempts = [[[10, 11, 2], [12, 2]], [[13, 2], [14, 15, 16, 2]]]
    ep = pack(dialogue, prompts, attempts, task.instruction)
    instr = dialogue.next_turn(task.instruction)
    for i, (prompt, atts) in enumerate(zip(prompts, attempts)):
        first = dialogue.first_turn(prompt)
        expected = first + atts[0] + instr + atts[1]
        assert ep.tokens[i, :len(expected)].tolist() == expected
        assert ep.attention_mask[i].sum().item() == len(expected)
        assert ep.tokens[i, ep.attempt_mask[i, 0]].tolist() == atts[0]
        assert ep.tokens[i, ep.attempt_mask[i, 1]].tolist() == atts[1]
        # prompt and instruction are never attempt tokens
        assert not ep.attempt_mask[i, :, :len(first)].any()
        assert not ep.attempt_mask[i, :, len(first) + len(atts[0]):len(first) + len(atts[0]) + len(instr)].any()
    assert not (ep.attempt_mask[:, 0] & ep.attempt_mask[:, 1]).any()


def test_sample_stops_at_eos_and_respects_max_tokens(tiny_model, dialogue):
    contexts = [dialogue.first_turn("1 x + 2 = 3 mod 10 ."), dialogue.first_turn("7 x")]
    out = sample(tiny_model, contexts, SamplingConfig(max_new_tokens=5), dialogue.eos_id, dialogue.pad_id,
                 torch.Generator().manual_seed(0))
    for row in out:
        assert 1 <= len(row) <= 5
        assert dialogue.eos_id not in row[:-1]  # nothing after eos


def test_left_padding_does_not_change_greedy_output(tiny_model, dialogue):
    short, long = dialogue.first_turn("7 x"), dialogue.first_turn("1 x + 2 = 3 mod 10 . x is 1 or 5 .")
    alone = sample(tiny_model, [short], GREEDY, dialogue.eos_id, dialogue.pad_id)
    batched = sample(tiny_model, [long, short], GREEDY, dialogue.eos_id, dialogue.pad_id)
    assert batched[1] == alone[0]


def test_rollout_k_attempts_and_logprobs(tiny_model, dialogue, task):
    problems = task.problems("train", 6)
    ep = rollout(tiny_model, dialogue, task, problems, 3, SamplingConfig(max_new_tokens=6),
                 torch.Generator().manual_seed(1))
    assert ep.rewards.shape == (6, 3) and ep.attempt_mask.shape[1] == 3
    for i in range(6):
        for k in range(3):
            assert ep.tokens[i, ep.attempt_mask[i, k]].tolist() == ep.attempts[i][k]
    logp = token_logprobs(tiny_model, ep)
    assert logp.shape == ep.tokens.shape and torch.all(logp <= 0)
    sub = ep.select(slice(0, 2))
    assert torch.allclose(token_logprobs(tiny_model, sub), logp[:2, :sub.tokens.shape[1]], atol=1e-5)


def test_same_generator_seed_same_rollout(tiny_model, dialogue, task):
    problems = task.problems("train", 4)
    a = rollout(tiny_model, dialogue, task, problems, 2, SamplingConfig(), torch.Generator().manual_seed(3))
    b = rollout(tiny_model, dialogue, task, problems, 2, SamplingConfig(), torch.Generator().manual_seed(3))
    assert a.attempts == b.attempts
