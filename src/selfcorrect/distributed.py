"""What differs between one process, DDP, FSDP2 and DeepSpeed ZeRO-2, in one place.

The trainer runs the same loop under all of them through accelerate; this module holds
what it cannot leave to accelerate: which engines are refused, the whole weights that
sampling needs, and checkpoints holding full weights, written by the main process.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict, set_state_dict
from torch.distributed.fsdp import FSDPModule

from .errors import SelfCorrectError

_FULL = StateDictOptions(full_state_dict=True)


def make_accelerator(model, grad_clip: float) -> Accelerator:
    """The accelerator for this launch (plain, DDP, FSDP2 or DeepSpeed ZeRO-2); others are refused."""
    # A model on the CPU trains there (gloo between processes), wherever a GPU exists.
    accelerator = Accelerator(cpu=next(model.parameters()).device.type == "cpu")
    fsdp, deepspeed = _is_fsdp(accelerator), _is_deepspeed(accelerator)
    asked = [name for name, flag in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED"))
             if os.environ.get(flag, "").lower() == "true"]  # what `accelerate launch` read from its config
    if asked and not (fsdp or deepspeed):
        # accelerate (1.15) takes these configs only on accelerators and quietly falls back otherwise
        warnings.warn(f"accelerate config asks for {asked[0]}, but accelerate runs this launch as "
                      f"{accelerator.distributed_type.value} (the model is on the CPU): nothing is sharded", stacklevel=2)
    if (fsdp and not accelerator.is_fsdp2) or (deepspeed and accelerator.state.deepspeed_plugin.zero_stage == 3):
        # sampling needs the whole weights on each process: FSDP2's `unshard` gathers them, ZeRO-2 keeps them
        what = "FSDP version 1" if fsdp else "DeepSpeed ZeRO stage 3"
        raise SelfCorrectError(f"accelerate config: {what} is not supported; use configs/accelerate/ddp.yaml, "
                               "fsdp.yaml (fsdp_version: 2) or deepspeed-zero2.yaml")
    if deepspeed:
        # DeepSpeed clips and steps in the `backward` of a step's last micro-batch (the trainer sets
        # `sync_gradients` on it); the micro-batches are the trainer's own, so DeepSpeed accumulates
        # nothing itself and its batch size is only a formality
        accelerator.state.deepspeed_plugin.deepspeed_config.update(
            train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, gradient_clipping=grad_clip)
    return accelerator


def _is_fsdp(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.FSDP


def _is_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


@contextlib.contextmanager
def whole_weights(accelerator: Accelerator, policy):
    """Under FSDP, the full weights on every process for the block, gathered once (else nothing).

    Sampling runs a different number of decoding steps on each process, so the weights
    cannot be gathered per forward as FSDP does in training (that needs all processes in
    lockstep); here no forward inside the block communicates.
    """
    shards = [m for m in policy.modules() if isinstance(m, FSDPModule)] if _is_fsdp(accelerator) else []
    reshard = bool(shards) and bool(accelerator.state.fsdp_plugin.reshard_after_forward)
    for m in shards:
        m.unshard()
        m.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for m in shards:
            m.reshard()
            # as FSDP has it: the root keeps its weights after forward, since backward needs them at once
            m.set_reshard_after_forward(reshard and m is not policy, recurse=False)


def full_weights(policy) -> dict:
    """The whole weights on every process (FSDP gathers them; elsewhere the state dict)."""
    return get_model_state_dict(policy, options=_FULL)


def full_state(accelerator: Accelerator, model, optimizer) -> tuple[dict, object]:
    """(weights, optimizer state) for a checkpoint, on the main process's CPU; every process calls it.

    ZeRO-2 keeps whole weights everywhere but partitions the optimizer state: the checkpoint
    holds each process's partition, in process order (so a resume needs as many processes).
    """
    if _is_deepspeed(accelerator):
        from deepspeed.checkpoint.utils import clone_tensors_for_torch_save

        gathered = [None] * accelerator.num_processes if accelerator.is_main_process else None
        torch.distributed.gather_object(clone_tensors_for_torch_save(optimizer.state_dict()), gathered)
        return accelerator.get_state_dict(model), gathered
    return get_state_dict(accelerator.unwrap_model(model), optimizer,
                          options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(accelerator: Accelerator, model, optimizer, weights: dict, optimizer_state) -> None:
    """Restore what `full_state` returned: each process takes its shard (FSDP) or partition (ZeRO-2)."""
    policy = accelerator.unwrap_model(model)
    if _is_deepspeed(accelerator):
        policy.load_state_dict(weights)
        model.optimizer.load_state_dict(optimizer_state, load_from_fp32_weights=True)
    else:
        set_state_dict(policy, optimizer, model_state_dict=weights, optim_state_dict=optimizer_state, options=_FULL)
