"""Rollout: per-attempt masks, stopping, greedy determinism, K attempts."""

import torch

from selfcorrect.rollout import (GREEDY, SamplingConfig, _cut, _dynamic_decode, _pick, _static_decode, pack, rollout,
                                 micro_batches, sample, token_logprobs)


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


def test_inverse_cdf_sampling_matches_the_truncated_distribution():
    """Evenly spread uniforms reproduce the top-p renormalised probabilities exactly."""
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    n = 1000
    logits = probs.log().expand(n, 4)
    uniforms = (torch.arange(n) + 0.5) / n
    full = _pick(logits, SamplingConfig(), uniforms)
    assert torch.bincount(full, minlength=4).tolist() == [50, 500, 150, 300]
    # top_p = 0.7 keeps 0.5 and 0.3 (mass before 0.15 is 0.8 >= 0.7): renormalised 0.625 / 0.375
    nucleus = _pick(logits, SamplingConfig(top_p=0.7), uniforms)
    assert torch.bincount(nucleus, minlength=4).tolist() == [0, 625, 0, 375]
    # temperature sharpens: T -> small picks the mode
    assert (_pick(logits, SamplingConfig(temperature=0.01), uniforms) == 1).all()


def _eos_that_fires(model, contexts, dialogue, sampling, uniforms):
    """A token sampled early in some rows but not others: rows then stop at different times."""
    rows = sample(model, contexts, sampling, eos_id=-1, pad_id=dialogue.pad_id, uniforms=uniforms)
    first_seen = lambda tok: {r.index(tok) if tok in r else None for r in rows}
    return max({t for r in rows for t in r}, key=lambda tok: len(first_seen(tok)))


def test_dropping_finished_rows_and_the_static_cache_give_the_same_tokens(tiny_model, dialogue, task):
    contexts = [dialogue.first_turn(p.prompt) for p in task.problems("train", 8)]
    sampling = SamplingConfig(temperature=1.0, top_p=0.9, max_new_tokens=12)
    uniforms = torch.rand(len(contexts), sampling.max_new_tokens, generator=torch.Generator().manual_seed(0))
    eos = _eos_that_fires(tiny_model, contexts, dialogue, sampling, uniforms)
    cpu = torch.device("cpu")
    for cfg, u in ((GREEDY, None), (sampling, uniforms)):
        dynamic = _cut(_dynamic_decode(tiny_model, contexts, cfg, eos, dialogue.pad_id, u, cpu), eos)
        static = _cut(_static_decode(tiny_model, contexts, cfg, eos, dialogue.pad_id, u, cpu, compile=False), eos)
        assert dynamic == static
    assert len({len(r) for r in dynamic}) > 1  # the sampled rows did stop at different times


def test_a_shard_samples_what_the_whole_batch_samples_for_its_rows(tiny_model, dialogue, task):
    problems = task.problems("train", 6)
    sampling = SamplingConfig(max_new_tokens=8)
    whole = rollout(tiny_model, dialogue, task, problems, 2, sampling, torch.Generator().manual_seed(5))
    part = rollout(tiny_model, dialogue, task, problems, 2, sampling, torch.Generator().manual_seed(5), shard=slice(2, 4))
    assert part.attempts == whole.attempts[2:4]
    assert torch.equal(part.rewards, whole.rewards[2:4])


def test_micro_batches_respect_both_budgets_and_cover_each_episode_once():
    lengths = torch.tensor([5, 40, 7, 38, 6, 41, 39, 8])
    batches = micro_batches(lengths, max_episodes=3, max_tokens=100)
    assert sorted(torch.cat(batches).tolist()) == list(range(8))
    for b in batches:
        assert len(b) <= 3 and len(b) * int(lengths[b].max()) <= 100
    # similar lengths travel together: the long ones are not padded against the short ones
    assert {frozenset(b.tolist()) for b in batches} == {frozenset({5, 1}), frozenset({6, 3}), frozenset({7, 2, 4}),
                                                         frozenset({0})}
    # a single episode over the token budget still gets its own micro-batch
    assert [b.tolist() for b in micro_batches(torch.tensor([300, 2]), 8, 100)] == [[0], [1]]
    # without a token budget only the episode count splits
    assert [len(b) for b in micro_batches(lengths, 3)] == [3, 3, 2]


def test_given_first_attempts_are_kept_and_the_rest_sampled(tiny_model, dialogue, task):
    problems = task.problems("train", 4)
    sampling = SamplingConfig(max_new_tokens=6)
    whole = rollout(tiny_model, dialogue, task, problems, 3, sampling, torch.Generator().manual_seed(2))
    firsts = [[atts[0]] for atts in whole.attempts]
    # attempt 1 given, the same random numbers for attempts 2 and 3: the same episodes
    generator = torch.Generator().manual_seed(2)
    torch.rand(len(problems), sampling.max_new_tokens, generator=generator)  # what attempt 1 drew
    rest = rollout(tiny_model, dialogue, task, problems, 3, sampling, generator, given=firsts)
    assert rest.attempts == whole.attempts and torch.equal(rest.tokens, whole.tokens)
    trained = rest.without_attempt(0)
    assert not trained.attempt_mask[:, 0].any() and torch.equal(trained.attempt_mask[:, 1:], rest.attempt_mask[:, 1:])
    assert rest.attempt_mask[:, 0].any()  # the original is left alone
