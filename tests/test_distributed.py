"""Two processes under `accelerate launch` (DDP on CPU) follow the one-process trajectory."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("distributed_run.py")


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, str(SCRIPT), str(one)], check=True, timeout=300)
    # accelerate 1.x runs `--cpu --num_processes 2` as one process unless MPI is set up;
    # its torchrun launcher (--multi_gpu) starts two, which train on the CPU (gloo).
    with socket.socket() as free:  # a free port for the processes to meet on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                    "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no",
                    "--dynamo_backend", "no", str(SCRIPT), str(two)],
                   check=True, timeout=300)
    assert (one / "processes.txt").read_text() == "1" and (two / "processes.txt").read_text() == "2"
    a, b = _metrics(one), _metrics(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        # the same samples (each row's randomness does not depend on the sharding) ...
        for key in ("reward_t1", "reward_t2", "identical", "trained_episodes"):
            assert ra[key] == rb[key], (ra["step"], key)
        # ... and the same update, up to float rounding of a different batch layout
        for key in ("loss", "pg_loss", "kl_loss", "kl_t1", "kl_t2", "grad_norm"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), (ra["step"], key)
    wa = torch.load(one / "checkpoint.pt", weights_only=False)["model"]
    wb = torch.load(two / "checkpoint.pt", weights_only=False)["model"]
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-5), name
