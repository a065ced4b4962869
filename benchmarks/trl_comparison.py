"""selfcorrect's training step next to TRL's GRPOTrainer: same model, prompts, batch, lengths, device.

    python3 benchmarks/trl_comparison.py [--model embedded|random] [--steps 6] [--rounds 2] ...

Both train one attempt per problem (single-turn RL: n samples of each of P problems, a KL
to the frozen reference with beta 0.01, one update per step), so the work is the same:
generation of P*n completions of up to T tokens, a reference forward, a policy
forward/backward and an optimizer step. A third run times selfcorrect's full SCoRe step
(two attempts). Each side runs in a fresh process of its own, the sides alternate for
`--rounds` rounds, the first `--warmup` steps of each run are dropped (compile and
allocator warm-up) and the figures printed are medians over the remaining steps of all
rounds. Peak memory is the process's peak RSS on the CPU, and torch's peak allocated
memory on CUDA. Needs `pip install trl datasets`.

The model: `embedded` is the demo's pretrained tiny Llama (its completions stop at eos,
as real ones do); `random` is a from-scratch Llama of `--hidden/--layers` with the same
tokenizer (its completions run to T tokens: the pure throughput case).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(args):
    import random

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from selfcorrect.dialogue import PlainDialogue
    from selfcorrect.models import load_or_pretrain
    from selfcorrect.models.tiny import TinyModelConfig, fit_tokenizer
    from selfcorrect.tasks import ModRootTask

    task = ModRootTask()
    if args.model == "embedded":
        model, tokenizer = load_or_pretrain(task, TinyModelConfig(), progress=False)
    else:  # the embedded task's tokenizer, a fresh model
        rng = random.Random(0)
        demos = [task.demonstration(rng) for _ in range(2000)]
        tokenizer = fit_tokenizer(task, demos)
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=args.hidden * 4,
            num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64, num_key_value_heads=args.hidden // 64,
            max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True))
        # saved and reloaded: TRL builds its reference model from the model's folder
        folder = tempfile.mkdtemp(prefix="bench-model-")
        model.save_pretrained(folder)
        model = LlamaForCausalLM.from_pretrained(folder)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    return task, model.to(args.device, dtype), tokenizer, PlainDialogue(tokenizer)


def peak_memory_gb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def run_ours(args, attempts: int) -> list[dict]:
    from selfcorrect.rollout import SamplingConfig
    from selfcorrect.trainer import TrainConfig, train

    task, model, _, dialogue = build(args)
    config = TrainConfig(
        method="single_turn" if attempts == 1 else "score", attempts=attempts, steps=args.steps,
        stage1_steps=args.steps // 2, problems_per_step=args.problems, samples_per_problem=args.samples,
        micro_batch=args.problems * args.samples, micro_batch_tokens=args.micro_batch_tokens, lr=args.lr, beta1=0.01,
        sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens),
        checkpoint_every=10**6, seed=args.seed)
    with tempfile.TemporaryDirectory() as out:
        train(model, dialogue, task, config, out, progress=False)
        records = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()]
    steps = []
    for r in records:
        generated = r["generated_tokens_per_s"] * r["time_generate"]
        steps.append({"seconds": r["seconds"], "generate": r["time_generate"], "reference": r.get("time_reference", 0),
                      "forward_backward": r["time_forward_backward"], "optimizer": r["time_optimizer"],
                      "samples": args.problems * args.samples * attempts, "generated_tokens": generated})
    return steps


def run_trl(args) -> list[dict]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    task, model, tokenizer, _ = build(args)
    problems = {p.prompt: p for p in task.problems("train")}
    reward = lambda prompts, completions, **_: [task.reward(problems[p], c) for p, c in zip(prompts, completions)]
    generate, spent = model.generate, []

    def timed_generate(*a, **k):
        start = time.perf_counter()
        out = generate(*a, **k)
        if args.device == "cuda":
            import torch
            torch.cuda.synchronize()
        spent.append(time.perf_counter() - start)
        return out

    model.generate = timed_generate
    steps: list[dict] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            steps.append({"seconds": time.perf_counter() - self.start, "generate": sum(spent),
                          "samples": args.problems * args.samples})
            spent.clear()

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs and "completions/mean_length" in logs and steps:
                steps[-1]["generated_tokens"] = logs["completions/mean_length"] * args.problems * args.samples

    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, per_device_train_batch_size=args.problems * args.samples, num_generations=args.samples,
            max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, beta=0.01, learning_rate=args.lr,
            max_steps=args.steps, logging_steps=1, save_strategy="no", report_to=[], use_cpu=args.device == "cpu",
            bf16=False, gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, disable_tqdm=True,
            seed=args.seed, dataloader_num_workers=0)
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, processing_class=tokenizer,
                              train_dataset=Dataset.from_list([{"prompt": p} for p in problems]), callbacks=[Timer()])
        trainer.train()
    return steps


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    steps = {"ours": lambda: run_ours(args, 1), "trl": lambda: run_trl(args),
             "ours_score": lambda: run_ours(args, 2)}[args.side]()
    print("RESULT " + json.dumps({"steps": steps[args.warmup:], "peak_memory_gb": peak_memory_gb(args.device)}))


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def summary(runs: list[dict]) -> dict:
    steps = [s for run in runs for s in run["steps"]]
    out = {"step_s": median(s["seconds"] for s in steps), "generate_s": median(s["generate"] for s in steps),
           "samples": steps[0]["samples"], "tokens": median(s.get("generated_tokens", float("nan")) for s in steps),
           "peak_memory_gb": max(r["peak_memory_gb"] for r in runs)}
    out["update_s"] = out["step_s"] - out["generate_s"]
    out["samples_per_s"] = out["samples"] / out["step_s"]
    out["gen_tokens_per_s"] = out["tokens"] / out["generate_s"]
    for phase in ("reference", "forward_backward", "optimizer"):
        if phase in steps[0]:
            out[phase + "_s"] = median(s[phase] for s in steps)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["embedded", "random"], default="embedded")
    parser.add_argument("--hidden", type=int, default=768, help="random model: hidden size (heads of 64)")
    parser.add_argument("--layers", type=int, default=12, help="random model: layers")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--micro-batch-tokens", type=int, default=0)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1 on a shared CPU)")
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sides", default="ours,trl,ours_score")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return child(args)

    sides = args.sides.split(",")
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    argv = [a for a in sys.argv[1:]]
    for round_ in range(args.rounds):
        for side in sides:
            proc = subprocess.run([sys.executable, __file__, *argv, "--side", side], capture_output=True, text=True,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
            runs[side].append(json.loads(line[0][len("RESULT "):]))
            print(f"round {round_ + 1} {side}: median step {summary(runs[side][-1:])['step_s']:.3f} s", flush=True)

    figures = {side: summary(r) for side, r in runs.items()}
    print(f"\nmodel={args.model} device={args.device} threads={args.threads} problems={args.problems} "
          f"samples={args.samples} max_new_tokens={args.max_new_tokens} steps={args.steps} (first {args.warmup} "
          f"dropped) rounds={args.rounds}; medians\n")
    print("| run | step s | samples/s | generate s | gen tokens/s | update s | reference s | fwd+bwd s | optimizer s "
          "| peak memory GB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for side, f in figures.items():
        cells = [f"{f['step_s']:.3f}", f"{f['samples_per_s']:.1f}", f"{f['generate_s']:.3f}",
                 f"{f['gen_tokens_per_s']:.0f}", f"{f['update_s']:.3f}",
                 *(f"{f[k]:.3f}" if k in f else "-" for k in ("reference_s", "forward_backward_s", "optimizer_s")),
                 f"{f['peak_memory_gb']:.2f}"]
        print(f"| {side} | " + " | ".join(cells) + " |")
    if "ours" in figures and "trl" in figures:
        ours, trl = figures["ours"], figures["trl"]
        print(f"\nselfcorrect / TRL GRPOTrainer, one attempt: samples/s x{ours['samples_per_s'] / trl['samples_per_s']:.2f}, "
              f"generation tokens/s x{ours['gen_tokens_per_s'] / trl['gen_tokens_per_s']:.2f}, "
              f"update time x{trl['update_s'] / ours['update_s']:.2f} faster")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures, "runs": runs}, indent=1))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
