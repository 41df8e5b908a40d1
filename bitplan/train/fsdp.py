"""FSDP2 for quantized training: shard a planned model over ranks, with optional activation checkpointing.

Order (what ``shard`` does, and what a user's own loop should do): apply the plan (``bitplan.apply``),
then activation checkpointing (``torch.distributed._composable.checkpoint`` on each block, which
keeps parameter names), then ``fully_shard`` each block and finally the root over an explicit 1-D
device mesh (gloo on CPU, nccl on CUDA). FSDP2 all-gathers a block's weights before its forward, so
every quantizer sees the full weight: per-channel and per-tensor weight scales are exactly those of
an unsharded model. Statistics of a weight taken outside forward (``global_range``) reduce the
shards' ranges with one MAX all-reduce.

Gradients: on gloo, the reduce-scatter sums and the average is taken by dividing afterwards
(``set_force_sum_reduction_for_comms``), since gloo's AVG reduction is missing or wrong in some
torch releases. Stochastic-rounding noise is seeded per rank as under DDP (``sr_seed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from bitplan.errors import TrainingError
from bitplan.quant import ActivationObserver


def fully_shard_api():
    """``torch.distributed.fsdp.fully_shard`` and ``FSDPModule``.

    Raises:
        TrainingError: This torch has no FSDP2 (before 2.6, or built without distributed support).
    """
    try:
        from torch.distributed.fsdp import FSDPModule, fully_shard
    except ImportError:
        raise TrainingError(
            f"`--parallel fsdp` needs FSDP2 (`torch.distributed.fsdp.fully_shard`), which torch {torch.__version__} "
            "lacks; install torch 2.6 or newer built with distributed support, or use `--parallel ddp`"
        ) from None
    return fully_shard, FSDPModule


def blocks_of(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard (and checkpoint) one by one.

    A Hugging Face model names its block classes (``_no_split_modules``); otherwise every element of
    a ``ModuleList`` (or ``Sequential``) whose elements are all of one class, at least two of them.
    Nested candidates inside a chosen block are skipped, so blocks never overlap.

    Example:
        >>> stack = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> len(blocks_of(nn.ModuleDict({"layers": stack})))
        2
    """
    names = set(getattr(model, "_no_split_modules", None) or ())
    chosen: list[nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if names:
            picked = [module] if type(module).__name__ in names and module is not model else []
        elif isinstance(module, (nn.ModuleList, nn.Sequential)) and module is not model:
            children = list(module.children())
            same = len(children) >= 2 and len({type(child) for child in children}) == 1
            picked = children if same and any(p.numel() for p in children[0].parameters()) else []
        else:
            picked = []
        for block in picked:
            chosen.append(block)
            inside.update(id(sub) for sub in block.modules())
    return chosen


@contextmanager
def _observers_frozen(module: nn.Module) -> Iterator[None]:
    """Activation ranges are not updated again while checkpointing recomputes a forward."""
    observers = [sub for sub in module.modules() if isinstance(sub, ActivationObserver)]
    for observer in observers:
        observer.frozen = True
    try:
        yield
    finally:
        for observer in observers:
            observer.frozen = False


def checkpoint_activations(model: nn.Module, blocks: list[nn.Module] | None = None) -> list[nn.Module]:
    """Recompute each block's activations in backward instead of keeping them (names unchanged).

    The recomputed forward quantizes exactly as the first one (same weights, same batch range) but
    leaves the activation observers' running ranges alone, so training computes what it computes
    without checkpointing.

    Returns:
        The blocks checkpointed (``blocks_of(model)`` by default; the whole model when it has none).
    """
    from torch.distributed._composable import checkpoint

    blocks = blocks_of(model) if blocks is None else blocks
    for block in blocks or [model]:
        checkpoint(block, context_fn=lambda block=block: (_no_context(), _observers_frozen(block)))
    return blocks or [model]


@contextmanager
def _no_context() -> Iterator[None]:
    yield


def shard(
    model: nn.Module,
    *,
    device: torch.device | str | None = None,
    activation_checkpointing: bool = False,
    mesh=None,
) -> nn.Module:
    """Shard a (planned) model with FSDP2 for this process group: the library call for your own loop.

    Call it after ``bitplan.apply`` and before building the optimizer, in every rank of an initialised
    process group. Build the optimizer from ``model.parameters()`` afterwards (they are DTensors).

    Args:
        model: The model, plan applied, on ``device`` (or on meta, see ``materialize``).
        device: Device of the mesh (default: the model's, CPU for a model on meta).
        activation_checkpointing: Recompute each block's activations in backward.
        mesh: A 1-D ``DeviceMesh`` over the data-parallel ranks (default: all ranks).

    Returns:
        ``model`` itself, now an ``FSDPModule``.

    Raises:
        TrainingError: No FSDP2 in this torch, or no process group of at least two ranks.

    Example:
        >>> model = shard(bitplan.apply(model, plan, inputs, seed=sr_seed(0, rank)))  # doctest: +SKIP
    """
    import torch.distributed as dist

    fully_shard, fsdp_module = fully_shard_api()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        raise TrainingError(
            "FSDP2 shards the model over several processes, but this is a single process; launch with "
            "`--nproc 2` or more (torchrun), or train without `--parallel fsdp`"
        )
    if mesh is None:
        from torch.distributed.device_mesh import init_device_mesh

        kind = torch.device(device).type if device is not None else _device_type(model)
        mesh = init_device_mesh(kind, (dist.get_world_size(),))
    blocks = blocks_of(model)
    if activation_checkpointing:
        checkpoint_activations(model, blocks)
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if dist.get_backend() == "gloo":
        for module in model.modules():
            if isinstance(module, fsdp_module):
                module.set_force_sum_reduction_for_comms(True)
    return model


def _device_type(model: nn.Module) -> str:
    for tensor in model.parameters():
        return "cpu" if tensor.device.type == "meta" else tensor.device.type
    return "cpu"


def global_range(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of a whole weight, sharded (DTensor) or not: one MAX all-reduce of (−min, max).

    Example:
        >>> global_range(torch.tensor([-1.0, 3.0]))
        (tensor(-1.), tensor(3.))
    """
    from torch.distributed.tensor import DTensor

    if not isinstance(tensor, DTensor):
        return torch.aminmax(tensor.detach())
    import torch.distributed as dist

    local = tensor.to_local().detach()
    if local.numel():
        low, high = torch.aminmax(local)
        both = torch.stack([-low, high]).float()
    else:  # a rank whose shard is empty (more ranks than rows) contributes nothing
        both = torch.full((2,), -torch.inf, device=local.device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=tensor.device_mesh.get_group())
    return -both[0], both[1]


def sync_activation_ranges(model: nn.Module) -> None:
    """Give every rank the activation ranges seen by all of them: one MAX all-reduce of (−min, max).

    Each rank's observers average the ranges of its own batches; evaluation and export use the
    running ranges, so they are made one before either (a rank's never-updated observer counts for
    nothing). DDP instead broadcasts rank 0's buffers at every forward.
    """
    import torch.distributed as dist

    observers = [module for module in model.modules() if isinstance(module, ActivationObserver)]
    if not observers or not dist.is_initialized():
        return
    seen = torch.stack([observer.num_batches > 0 for observer in observers])  # [N]
    ranges = torch.stack([torch.stack([-o.running_min, o.running_max]) for o in observers]).float()  # [N, 2]
    ranges = torch.where(seen[:, None], ranges, torch.full_like(ranges, -torch.inf))
    dist.all_reduce(ranges, op=dist.ReduceOp.MAX)
    with torch.no_grad():
        for observer, (low, high) in zip(observers, ranges):
            if torch.isfinite(high):
                observer.running_min.copy_(-low)
                observer.running_max.copy_(high)
                observer.num_batches.clamp_(min=1)


def materialize(model: nn.Module, directory: Path, device: torch.device | str) -> None:
    """Give a model sharded on meta its storage on ``device`` and fill each rank's rows from safetensors.

    Each rank reads only the rows of its own shards (``safe_open(...).get_slice``), so no process
    ever holds a full copy of the model. Buffers that were real before (rotary tables) keep their
    values; others (the activation observers) start at zero, as a fresh model's do.

    Raises:
        TrainingError: A parameter has no tensor in the directory's safetensors, or another shape.
    """
    from safetensors import safe_open
    from torch.distributed.tensor import DTensor, Shard

    from bitplan.hf_checkpoint import weight_files

    kept = {name: buffer.detach().clone() for name, buffer in model.named_buffers() if not buffer.is_meta}
    names_of: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(parameter), []).append(name)
    model.to_empty(device=device)
    where = {}
    for file in weight_files(directory):
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                where.update({key: file for key in handle.keys()})
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(kept[name]) if name in kept else buffer.zero_()
        for _, parameter in model.named_parameters():
            key = next((name for name in names_of[id(parameter)] if name in where), None)
            if key is None:
                raise TrainingError(
                    f"`{names_of[id(parameter)][0]}` has no tensor in the safetensors of `{directory}`; save the "
                    "complete model there with `save_pretrained`"
                )
            local = parameter.to_local() if isinstance(parameter, DTensor) else parameter
            start = 0
            if isinstance(parameter, DTensor):
                if parameter.placements != (Shard(0),):
                    raise TrainingError(f"`{key}` is sharded as {parameter.placements}; materialize reads Shard(0) rows")
                mesh = parameter.device_mesh
                chunk = -(-parameter.shape[0] // mesh.size())  # torch.chunk's rows per rank
                start = min(mesh.get_local_rank() * chunk, parameter.shape[0])
            with safe_open(str(where[key]), framework="pt") as handle:
                rows = handle.get_slice(key)
                if list(rows.get_shape()) != list(parameter.shape):
                    raise TrainingError(
                        f"`{key}` in `{directory}` has shape {rows.get_shape()}, the model {list(parameter.shape)}; "
                        "the directory's config.json does not belong to its weights"
                    )
                local.copy_(rows[start:start + local.shape[0]].to(local.dtype))


def reshard(model: nn.Module) -> None:
    """Put every FSDP2 module's sharded parameters back after a forward without backward.

    The root keeps its parameters gathered after forward (it expects backward to follow), so
    after an evaluation forward its registered parameters are the full ones; building an optimizer
    or a state dict then would see those instead of the shards.
    """
    _, fsdp_module = fully_shard_api()
    for module in model.modules():
        if isinstance(module, fsdp_module):
            module.reshard()


def collective_batches(loader, batches: int):
    """``batches`` batches: the loader's, then its first one again (an exhausted rank's stand-in forwards)."""
    first = None
    for batch in loader:
        first = batch if first is None else first
        yield batch
    for _ in range(len(loader), batches):
        if first is None:  # an empty shard has nothing to repeat; only a dataset smaller than the ranks
            raise TrainingError("a rank's test shard is empty; give a test split with at least one sample per process")
        yield first


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 has sharded ``model``'s parameters (DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(parameter, DTensor) for parameter in model.parameters())
