"""One training step of the embedded default on the CPU, phase by phase, selfcorrect next to plainer ways.

    python3 benchmarks/embedded_step.py [--repeats 15] [--threads 1]

The cached tiny base (pretrained on first use), 32 problems x 4 samples, two attempts,
sampling as configs/demo.yaml (temperature 1, top_p 0.9, at most 32 tokens an attempt),
one thread as in `selfcorrect compare`. The variants of a phase run in turn within each
repeat (a noisy machine slows them alike); medians, and each variant's median ratio to
its phase's baseline.
Sampling (both attempts):
  hf_generate     model.generate for each attempt, on the whole dialogue so far (baseline)
  ours            `sample` for each attempt, as `rollout` calls it (identical contexts, the
                  first attempt's, encoded once)
Update (log-probabilities of the sampled episodes):
  plain_train     one forward and backward pass over every whole row (baseline)
  ours_train      `token_logprobs`: each prompt encoded once, forward and backward
  plain_reference one forward pass without gradients (baseline)
  ours_reference  `token_logprobs` without gradients
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from selfcorrect.dialogue import PlainDialogue
from selfcorrect.models import TinyModelConfig, load_or_pretrain
from selfcorrect.rollout import SamplingConfig, _left_pad, rollout, sample, token_logprobs
from selfcorrect.tasks import ModRootConfig, ModRootTask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = ModRootTask(ModRootConfig())
    model, tokenizer = load_or_pretrain(task, TinyModelConfig())
    dialogue = PlainDialogue(tokenizer)
    sampling = SamplingConfig(temperature=1.0, top_p=0.9, max_new_tokens=32)
    problems = [p for p in task.problems("train")[:args.problems] for _ in range(args.samples)]
    firsts = [dialogue.first_turn(p.prompt) for p in problems]
    turn = dialogue.next_turn(task.instruction)
    generator = torch.Generator().manual_seed(0)

    def per_turn(generate):
        attempts = [[] for _ in problems]
        for _ in range(2):
            contexts = [f + [t for a in atts for t in a + turn] for f, atts in zip(firsts, attempts)]
            for atts, new in zip(attempts, generate(contexts)):
                atts.append(new)
        return attempts

    def hf_generate(contexts):
        ids, mask = _left_pad(contexts, dialogue.pad_id, max(map(len, contexts)), "cpu")
        out = model.generate(ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=0.9, top_k=0,
                             max_new_tokens=sampling.max_new_tokens, pad_token_id=dialogue.pad_id,
                             eos_token_id=dialogue.eos_id)[:, ids.shape[1]:].tolist()
        return [row[: row.index(dialogue.eos_id) + 1] if dialogue.eos_id in row else row for row in out]

    episodes = rollout(model, dialogue, task, problems, 2, sampling, generator)

    def plain_logprobs(m):
        logits = m(input_ids=episodes.tokens, attention_mask=episodes.attention_mask).logits
        return torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, episodes.tokens[:, 1:, None]).squeeze(-1)

    def train(logprobs):
        model.zero_grad(set_to_none=True)
        logprobs().sum().backward()

    phases = {
        "sampling": {
            "hf_generate": lambda: per_turn(hf_generate),
            "ours": lambda: per_turn(lambda c: sample(model, c, sampling, dialogue.eos_id, dialogue.pad_id, generator)),
        },
        "update": {
            "plain_train": lambda: train(lambda: plain_logprobs(model)),
            "ours_train": lambda: train(lambda: token_logprobs(model, episodes)),
            "plain_reference": lambda: torch.no_grad()(plain_logprobs)(model),
            "ours_reference": lambda: torch.no_grad()(token_logprobs)(model, episodes),
        },
    }
    print(f"embedded default: {len(problems)} episodes of 2 attempts, {episodes.tokens.shape[1]} tokens a row, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {args.threads} thread(s), "
          f"{args.repeats} repeats")
    for phase, variants in phases.items():
        model.train(phase == "update")
        times = {name: [] for name in variants}
        for name, fn in variants.items():  # warm-up
            fn()
        for _ in range(args.repeats):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        print(f"\n{phase}:\n| variant | median ms | baseline / variant (median of per-repeat ratios) |\n|---|---|---|")
        for name, ts in times.items():
            base = times["plain_reference" if name.endswith("reference") else next(iter(times))]
            ratio = statistics.median(b / t for b, t in zip(base, ts))
            print(f"| {name} | {statistics.median(ts) * 1e3:.0f} | {ratio:.2f}x |")
    model.eval()


if __name__ == "__main__":
    main()
