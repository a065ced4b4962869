"""Two processes under `accelerate launch` (DDP, FSDP2 and DeepSpeed ZeRO-2, on the CPU) follow the one-process
trajectory."""

import json
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("distributed_run.py")
CONFIGS = Path(__file__).parents[1] / "configs" / "accelerate"


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _launch(out: Path, *options: str, resume: bool = False) -> None:
    with socket.socket() as free:  # a free port for the processes to meet on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", *options, "--num_processes", "2",
                    "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no",
                    "--dynamo_backend", "no", str(SCRIPT), str(out), *(["--resume"] if resume else [])],
                   check=True, timeout=300)


def _same_trajectory(a: list[dict], b: list[dict]) -> None:
    for ra, rb in zip(a, b, strict=True):
        # the same samples (each row's randomness does not depend on the sharding) ...
        for key in ("step", "reward_t1", "reward_t2", "identical", "trained_episodes"):
            assert ra[key] == rb[key], (ra["step"], key)
        # ... and the same update, up to float rounding of a different batch layout
        for key in ("loss", "pg_loss", "kl_loss", "kl_t1", "kl_t2", "grad_norm"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), (ra["step"], key)


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = torch.load(a, weights_only=False)["model"], torch.load(b, weights_only=False)["model"]
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-5), name


@pytest.fixture(scope="module")
def one(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one")
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, timeout=300)
    assert (out / "processes.txt").read_text() == "1 NO"
    return out


def test_two_processes_match_one_process(one, tmp_path):
    # accelerate 1.x runs `--cpu --num_processes 2` as one process unless MPI is set up;
    # its torchrun launcher (--multi_gpu) starts two, which train on the CPU (gloo).
    two = tmp_path / "two"
    _launch(two, "--multi_gpu")
    assert (two / "processes.txt").read_text() == "2 MULTI_CPU"
    assert [r["step"] for r in _metrics(two)] == [1, 2, 3, 4]
    _same_trajectory(_metrics(one), _metrics(two))
    _same_weights(one / "checkpoint.pt", two / "checkpoint.pt")


@pytest.mark.parametrize("config, kind", [("fsdp.yaml", "FSDP"), ("deepspeed-zero2.yaml", "DEEPSPEED")])
def test_sharded_matches_one_process_and_resumes(one, tmp_path, config, kind):
    # The shipped FSDP2 and ZeRO-2 configs; on the CPU, distributed_run.py makes accelerate take them (see there).
    if kind == "DEEPSPEED":
        pytest.importorskip("deepspeed")
    two = tmp_path / "two"
    _launch(two, "--config_file", str(CONFIGS / config))
    assert (two / "processes.txt").read_text() == f"2 {kind}"
    _same_trajectory(_metrics(one), _metrics(two))
    # the files hold full weights, gathered from the shards, as one process writes them
    _same_weights(one / "checkpoint.pt", two / "checkpoint.pt")
    _same_weights(one / "best.pt", two / "best.pt")
    # resumed from step 2, the shards (weights and optimizer state) come back: steps 3 and 4 again
    # (ZeRO-2's optimizer state is resumed on as many processes as wrote it)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(two / "checkpoint-2.pt", resumed / "checkpoint.pt")
    shutil.copy(two / "metrics.jsonl", resumed / "metrics.jsonl")
    _launch(resumed, "--config_file", str(CONFIGS / config), resume=True)
    _same_trajectory(_metrics(two), _metrics(resumed))
    _same_weights(two / "checkpoint.pt", resumed / "checkpoint.pt")


def test_a_sharding_config_that_accelerate_drops_is_reported(monkeypatch):
    from selfcorrect.distributed import make_accelerator

    model = torch.nn.Linear(2, 2)  # on the CPU, where accelerate 1.15 ignores FSDP and DeepSpeed configs
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.warns(UserWarning, match="asks for FSDP, but accelerate runs this launch as"):
        make_accelerator(model, grad_clip=1.0)
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_accelerator(model, grad_clip=1.0)
