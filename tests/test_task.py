import random

from selfcorrect.tasks import ModRootConfig, ModRootTask


def _equation(problem):
    words = problem.prompt.split()
    return words[0], words[3], words[5]


def test_splits_are_disjoint_by_equation(task):
    splits = {s: task.problems(s, 300) for s in ("train", "val", "test")}
    eqs = {s: {_equation(p) for p in ps} for s, ps in splits.items()}
    assert not eqs["train"] & eqs["test"] and not eqs["train"] & eqs["val"] and not eqs["val"] & eqs["test"]
    assert task.problems("test", 50) == splits["test"][:50]  # fixed order


def test_answer_is_the_unique_root_among_candidates():
    task = ModRootTask(ModRootConfig(candidates=3))
    for p in task.problems("test", 100):
        a, b, c = map(int, _equation(p))
        options = [int(w) for w in p.prompt.split()[11:-1:2]]
        assert len(options) == 3
        roots = [x for x in options if (a * x + b) % 10 == c]
        assert roots == [int(p.answer)]


def test_reward_needs_the_right_root_with_its_check_written_right():
    task = ModRootTask(ModRootConfig(modulus=13, candidates=3))
    for p in task.problems("test", 50):
        a, b, c = map(int, _equation(p))
        x = int(p.answer)
        wrong = next(int(w) for w in p.prompt.split()[11:-1:2] if int(w) != x)
        right = f"x = {x} ; {a} * {x} = {a * x % 13} ; {a * x % 13} + {b} = {c} ; {c} = {c}"
        assert task.reward(p, right) == 1.0 and task.answer(right) == str(x)
        assert task.reward(p, f" {right}\n") == 1.0  # surrounding whitespace is not the solution
        assert task.reward(p, right.replace(f"x = {x}", f"x = {wrong}", 1)) == 0.0
        bad_product = f"x = {x} ; {a} * {x} = {(a * x + 1) % 13} ; {a * x % 13} + {b} = {c} ; {c} = {c}"
        assert task.reward(p, bad_product) == 0.0 and task.answer(bad_product) == str(x)
        assert task.reward(p, right.replace(f"{c} = {c}", f"{c} != {c}")) == 0.0
        # cut off, or run on past the solution: no complete solution, no answer
        for broken in (right.rsplit(" ; ", 1)[0], right + f" {x}", f"x = {x}", f"x = {x} ; whatever", "no answer"):
            assert task.reward(p, broken) == 0.0 and task.answer(broken) is None


def test_demonstrations_check_correctly_and_never_correct(task):
    rng = random.Random(0)
    for _ in range(200):
        prompt, (first, second) = task.demonstration(rng)
        a, b, c = (int(prompt.split()[i]) for i in (0, 3, 5))
        for attempt in (first, second):
            w = attempt.split()
            x, value, verdict = int(w[2]), int(w[14]), w[17]
            assert value == (a * x + b) % 10 and (verdict == "=") == (value == c)


def test_demonstrations_keep_a_right_first_answer_less_often_than_a_wrong_one():
    task, rng = ModRootTask(ModRootConfig(copy_prob=0.7, copy_prob_right=0.4)), random.Random(1)
    kept = {True: [], False: []}
    for _ in range(6000):
        prompt, (first, second) = task.demonstration(rng)
        kept[first.split()[-2] == "="].append(first == second)  # the verdict says whether it is right
    rate = {right: sum(v) / len(v) for right, v in kept.items()}
    # kept: copied, or guessed afresh and drew the same candidate (1 of 2)
    assert abs(rate[True] - (0.4 + 0.6 / 2)) < 0.03 and abs(rate[False] - (0.7 + 0.3 / 2)) < 0.03


def test_the_tiny_tokenizer_reads_the_instruction_as_one_token(dialogue, task):
    ids = dialogue.next_turn(task.instruction)
    assert len(ids) == 1 and dialogue.tokenizer.decode(ids) == task.instruction
    attempt = "x = 3 ; 7 * 3 = 1 ; 1 + 2 = 3 ; 3 != 5"
    assert dialogue.decode(dialogue.tokenizer.encode(attempt, add_special_tokens=False)) == attempt


def test_the_pretrained_base_does_not_depend_on_the_thread_count(task):
    import torch

    from selfcorrect.models.tiny import TinyModelConfig, pretrain

    config = TinyModelConfig(pretrain_steps=5, batch_size=32)
    threads, weights = torch.get_num_threads(), []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            model, _ = pretrain(task, config, progress=False)
            weights.append(model.state_dict())
            assert torch.get_num_threads() == n  # restored after pretraining
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
