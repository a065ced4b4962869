"""Train the tiny model for a few SCoRe steps; run plainly or under `accelerate launch`.

Used by test_distributed.py: one process and two processes must give the same trajectory.
    python tests/distributed_run.py OUT                                   # one process
    accelerate launch --num_processes 2 --cpu tests/distributed_run.py OUT  # two
"""

import copy
import random
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from selfcorrect.dialogue import PlainDialogue
from selfcorrect.models.tiny import TinyModelConfig, build_model, fit_tokenizer
from selfcorrect.rollout import SamplingConfig
from selfcorrect.tasks import ModRootTask
from selfcorrect.trainer import TrainConfig, train

CONFIG = TrainConfig(method="score", steps=4, stage1_steps=2, problems_per_step=4, samples_per_problem=2,
                     micro_batch=3, checkpoint_every=2, sampling=SamplingConfig(max_new_tokens=8), lr=1e-3)


def main(out: str) -> None:
    torch.set_num_threads(1)
    task = copy.copy(ModRootTask())
    # a reward a random model earns about half the time, so the gradients are not zero
    task.reward = lambda problem, response: float(len(response.split()) % 2 == 0)
    rng = random.Random(0)
    demos = [task.demonstration(rng) for _ in range(300)]
    tokenizer = fit_tokenizer([task.instruction] + [p + " " + " ".join(a) for p, a in demos])
    model = build_model(TinyModelConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32), tokenizer)
    train(model, PlainDialogue(tokenizer), task, CONFIG, out, progress=False)
    state = PartialState()
    if state.is_main_process:
        (Path(out) / "processes.txt").write_text(str(state.num_processes))


if __name__ == "__main__":
    main(sys.argv[1])
