"""Does the embedded base read its own check where it chooses attempt 2's answer?

    python3 scripts/probe_verdict.py [--config configs/demo.yaml] [--cache-dir DIR] [--problems 3000]

Teacher-forces base-style dialogues (a uniform guess and its correct check as attempt 1,
the instruction, then "x =") and, at the position that chooses attempt 2's answer:
- fits a linear probe per layer for attempt 1's verdict (= or !=), on two thirds of the
  dialogues, and prints its accuracy on the rest (chance: about 50%);
- prints the mean probability of answering the other candidate, by verdict.
Used in docs/embedded-task.md.
"""

from __future__ import annotations

import argparse
import random

import torch

from selfcorrect.config import load_yaml
from selfcorrect.dialogue import PlainDialogue
from selfcorrect.experiment import ExperimentConfig
from selfcorrect.models import load_or_pretrain
from selfcorrect.tasks import ModRootTask


def probe_accuracy(features: torch.Tensor, labels: torch.Tensor, train: int) -> float:
    """Held-out accuracy of an L2-regularised logistic regression on standardised features."""
    mean, std = features[:train].mean(0), features[:train].std(0) + 1e-6
    x = (features - mean) / std
    w, b = torch.zeros(x.shape[1], requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x[:train] @ w + b, labels[:train])
        (loss + 1e-3 * w.pow(2).sum()).backward()
        return loss

    opt.step(closure)
    return float((((x[train:] @ w + b) > 0).float() == labels[train:]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="experiment YAML (default: the built-in defaults)")
    parser.add_argument("--cache-dir")
    parser.add_argument("--problems", type=int, default=3000)
    args = parser.parse_args()
    config = load_yaml(ExperimentConfig, args.config) if args.config else ExperimentConfig()
    task = ModRootTask(config.task)
    model, tokenizer = load_or_pretrain(task, config.model, args.cache_dir)
    dialogue, rng = PlainDialogue(tokenizer), random.Random(3)
    states, verdicts, switch = [], [], {True: [], False: []}
    for _ in range(args.problems):
        problem, a, b, c, options = task.random_problem(rng)
        guess = rng.choice(options)
        right = (a * guess + b) % task.config.modulus == c
        ids = (dialogue.first_turn(problem.prompt) + tokenizer.encode(task.attempt(a, b, c, guess), add_special_tokens=False)
               + [dialogue.eos_id] + dialogue.next_turn(task.instruction) + tokenizer.encode("x =", add_special_tokens=False))
        with torch.no_grad():
            out = model(torch.tensor([ids]), output_hidden_states=True)
        states.append(torch.stack([h[0, -1] for h in out.hidden_states]))
        verdicts.append(float(right))
        probs = torch.softmax(out.logits[0, -1], -1)
        switch[right].append(sum(float(probs[tokenizer.convert_tokens_to_ids(str(o))]) for o in options if o != guess))
    features, labels = torch.stack(states), torch.tensor(verdicts)
    for layer in range(features.shape[1]):
        accuracy = probe_accuracy(features[:, layer], labels, train=2 * len(labels) // 3)
        print(f"layer {layer}: verdict read by a linear probe {100 * accuracy:.1f}%")
    for right, values in switch.items():
        print(f"attempt 1 {'right' if right else 'wrong'}: P(attempt 2 answers another candidate) "
              f"{sum(values) / len(values):.3f} (n={len(values)})")


if __name__ == "__main__":
    main()
