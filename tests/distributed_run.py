"""Train the tiny model for a few SCoRe steps; run plainly or under `accelerate launch`.

Used by test_distributed.py: one process and two processes must give the same trajectory.
    python tests/distributed_run.py OUT                                                 # one process
    accelerate launch --multi_gpu --num_processes 2 tests/distributed_run.py OUT          # two, DDP
    accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 2 tests/distributed_run.py OUT
    accelerate launch --config_file configs/accelerate/deepspeed-zero2.yaml --num_processes 2 tests/distributed_run.py OUT
Each checkpoint is also kept as checkpoint-STEP.pt; `OUT --resume` resumes from OUT/checkpoint.pt.
"""

import copy
import os
import random
import shutil
import sys
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, InitProcessGroupKwargs

from selfcorrect.dialogue import PlainDialogue
from selfcorrect.models.tiny import TinyModelConfig, build_model, fit_tokenizer
from selfcorrect.rollout import SamplingConfig
from selfcorrect.tasks import ModRootTask
from selfcorrect.trainer import TrainConfig, train

CONFIG = TrainConfig(method="score", steps=4, stage1_steps=2, problems_per_step=4, samples_per_problem=2,
                     micro_batch=3, checkpoint_every=2, sampling=SamplingConfig(max_new_tokens=8), lr=1e-3)


def fsdp_on_the_cpu() -> None:
    """accelerate 1.15 takes an FSDP config only on accelerators: on the CPU its state says
    MULTI_CPU and the model would train under DDP. Make the process-wide state FSDP, with the
    plugin the launch config describes, as it is on GPUs; from there `train` runs accelerate's
    own FSDP2 path (`fully_shard` over gloo)."""
    Accelerator(cpu=True)  # sets up the processes and the shared state
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["fsdp_plugin"] = FullyShardedDataParallelPlugin()


def deepspeed_on_the_cpu() -> None:
    """accelerate 1.15 takes a DeepSpeed config only from an `Accelerator` built without `cpu=True`
    (which `train` passes for a model on the CPU). Build that one first, with gloo between the
    processes (DeepSpeed picks its CPU accelerator); `train`'s `Accelerator` then shares its state."""
    Accelerator(kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])


def main(out: str, resume: bool = False) -> None:
    torch.set_num_threads(1)
    if os.environ.get("ACCELERATE_USE_FSDP") == "true":  # set by `accelerate launch` from an FSDP config
        fsdp_on_the_cpu()
    if os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true":  # likewise from a DeepSpeed config
        deepspeed_on_the_cpu()
    task = copy.copy(ModRootTask())
    # a reward a random model earns about half the time, so the gradients are not zero
    task.reward = lambda problem, response: float(len(response.split()) % 2 == 0)
    rng = random.Random(0)
    demos = [task.demonstration(rng) for _ in range(300)]
    tokenizer = fit_tokenizer(task, demos)
    model = build_model(TinyModelConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32), tokenizer)
    keep = lambda step, _: shutil.copy(Path(out) / "checkpoint.pt", Path(out) / f"checkpoint-{step}.pt")
    train(model, PlainDialogue(tokenizer), task, CONFIG, out, resume=resume, on_checkpoint=keep, progress=False)
    state = PartialState()
    if state.is_main_process:
        (Path(out) / "processes.txt").write_text(f"{state.num_processes} {state.distributed_type.value}")


if __name__ == "__main__":
    main(sys.argv[1], resume="--resume" in sys.argv[2:])
