"""Generation throughput and update-phase MFU of a from-scratch Llama, selfcorrect next to plain transformers.

    python3 benchmarks/generation.py [--hidden 768 --layers 12 --vocab 32000 --batch 256 --new-tokens 128]

Generation: B random prompts of P tokens, T sampled tokens each (temperature 1; a random
model almost never stops early, so every run produces B*T tokens), timed after warm-up
calls (compile, CUDA graphs), medians over --repeats:
  hf_default      model.generate, default (dynamic) cache
  hf_static       model.generate, cache_implementation="static" (compiled on CUDA)
  ours            selfcorrect.rollout.sample as the trainer calls it (on CUDA: static cache,
                  compiled decoding step; elsewhere: dynamic cache dropping finished rows)
  ours_dynamic    selfcorrect's dynamic-cache path, forced
Update: one forward/backward of the policy loss over B episodes of P+T tokens (the
update phase of a step, all episodes in one micro-batch), model FLOPs 6*N*tokens plus
causal attention, MFU against --peak-tflops (H100/H200 dense bf16 datasheet: 989).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from selfcorrect.rollout import SamplingConfig, _cut, _dynamic_decode, pack, sample, token_logprobs


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, warmup: int) -> tuple[float, object]:
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=40)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--variants", default="hf_default,hf_static,ours,ours_dynamic,update")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    eos, pad = 2, 0
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 4, num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64, num_key_value_heads=args.hidden // 64, max_position_embeddings=4096,
        pad_token_id=pad, bos_token_id=1, eos_token_id=eos, tie_word_embeddings=True)).to(device, dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    contexts = torch.randint(3, args.vocab, (args.batch, args.prompt_tokens)).tolist()
    ids = torch.tensor(contexts, device=device)
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=args.new_tokens)
    hf_kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                     max_new_tokens=args.new_tokens, pad_token_id=pad, eos_token_id=eos)
    variants = {
        "hf_default": lambda: model.generate(ids, **hf_kwargs)[:, ids.shape[1]:].tolist(),
        "hf_static": lambda: model.generate(ids, cache_implementation="static", **hf_kwargs)[:, ids.shape[1]:].tolist(),
        "ours": lambda: sample(model, contexts, sampling, eos, pad),
        "ours_dynamic": lambda: _cut(_dynamic_decode(model, contexts, sampling, eos, pad,
                                                     torch.rand(args.batch, args.new_tokens), device), eos),
    }
    print(f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}) dtype={dtype} "
          f"params={params / 1e6:.1f}M batch={args.batch} prompt={args.prompt_tokens} new={args.new_tokens}", flush=True)
    print("| variant | median s | new tokens | new tokens/s | vs hf_default |\n|---|---|---|---|---|", flush=True)
    base = None
    for name in args.variants.split(","):
        if name not in variants:
            continue
        start = time.perf_counter()
        seconds, rows = timed(variants[name], device, args.repeats, args.warmup)
        warm = time.perf_counter() - start - seconds * args.repeats
        tokens = sum(len([t for t in r if t != pad]) for r in rows)
        rate = tokens / seconds
        base = base or (rate if name == "hf_default" else None)
        print(f"| {name} | {seconds:.3f} | {tokens} | {rate:,.0f} | {f'x{rate / base:.2f}' if base else '-'} | "
              f"(warm-up {warm:.0f} s)", flush=True)

    if "update" in args.variants:
        rows = [c + list(range(3, 3 + args.new_tokens)) for c in contexts]
        episodes = pack_plain(rows, args.prompt_tokens, pad)
        model.train()

        def step():
            logp = token_logprobs(model, episodes)
            loss = -(logp * episodes.attempt_mask[:, 0].to(logp.device)).sum() / len(episodes)
            loss.backward()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds, _ = timed(step, device, args.repeats + 2, args.warmup)
        tokens = args.batch * (args.prompt_tokens + args.new_tokens)
        length = args.prompt_tokens + args.new_tokens
        flops = 6 * params * tokens + 12 * args.layers * args.hidden * length * length * args.batch // 2
        tflops = flops / seconds / 1e12
        memory = f", peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else ""
        print(f"\nupdate (forward+backward, {tokens} tokens): {seconds * 1e3:.1f} ms, {tokens / seconds:,.0f} tokens/s, "
              f"{tflops:.1f} TFLOP/s = MFU {100 * tflops / args.peak_tflops:.1f}% of {args.peak_tflops:.0f}{memory}")


def pack_plain(rows: list[list[int]], prompt: int, pad: int):
    """Episodes of one attempt from raw token rows (no dialogue): the attempt is everything after `prompt`."""
    from types import SimpleNamespace

    dialogue = SimpleNamespace(first_turn=lambda text: text, next_turn=lambda text: [], pad_id=pad)
    return pack(dialogue, [r[:prompt] for r in rows], [[r[prompt:]] for r in rows], "")


if __name__ == "__main__":
    main()
