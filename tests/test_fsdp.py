"""FSDP2 trains a planned model exactly as DDP does (two gloo processes, for real), and resumes exactly.

One spawn of two processes checks both configurations, which between them cover per-channel and
per-tensor weights, SR and LUQ gradients, activation checkpointing on and off. Each runs five SGD steps (momentum, weight
decay) of the same planned transformer once under DDP and once under FSDP2 (``bitplan.train.fsdp.shard``)
on the same per-rank batches; the full FSDP2 weights must equal DDP's within 1e-5. With two ranks the
gradient average is (a + b) / 2 either way, so the runs agree to float rounding. Then a sharded
checkpoint (DCP) is saved, a fresh model resumes from it, and its next step must give the identical
loss and weights as the uninterrupted run.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

CONFIGS = [  # (weight granularity, gradient quantizer, activation checkpointing): each setting on and off
    ("channel", "sr", False),
    ("tensor", "luq", True),
]
SPEC = "zoo:transformer_lm?d_model=32&n_layers=2&n_heads=2&d_ff=64&seq_len=16&vocab=64"


def _plan(granularity: str, gradients: str):
    from bitplan.plan import make_plan
    from bitplan.spec import profile_spec

    plan = make_plan(profile_spec(SPEC), factor="A", strategy="U", bits=(4, 8))
    return plan.model_copy(update={
        "weight_granularity": granularity, "gradient_quant": gradients, "gradient_bits": 8, "activation_bits": 8,
    })


def _step(model, optimizer, tokens):
    import torch.nn.functional as F

    logits = model(tokens)  # [B, T, V]
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _full(model) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    return {
        name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone() for name, p in model.named_parameters()
    }


def _fsdp_model(base, plan, inputs, rank, checkpointing):
    from bitplan.qat import apply
    from bitplan.train.fsdp import shard
    from bitplan.train.loop import sr_seed

    model = shard(apply(copy.deepcopy(base), plan, inputs, seed=sr_seed(0, rank)), activation_checkpointing=checkpointing)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


def _materialized_equals_loaded(directory: str, rank: int) -> dict[str, bool]:
    """A checkpoint directory built on meta, planned, sharded and filled row by row from its
    safetensors holds exactly the weights ``from_pretrained`` loads, and computes the same logits."""
    from bitplan.plan import make_plan
    from bitplan.qat import apply
    from bitplan.spec import load_empty_hf, load_model, profile_spec
    from bitplan.train.fsdp import materialize, shard

    spec = f"{directory}?seq_len=8"
    plan = make_plan(profile_spec(spec), factor="A", strategy="C-", bits=(4, 8))
    full = load_model(spec)
    empty = load_empty_hf(spec)
    on_meta = all(p.is_meta for p in empty.parameters()) and not any(b.is_meta for b in empty.buffers())
    apply(full.model, plan, full.example_inputs, seed=rank)
    apply(empty, plan, full.example_inputs, seed=rank, verify=False)
    shard(empty)
    materialize(empty, Path(directory), "cpu")
    mine, theirs = _full(empty), dict(full.model.named_parameters())
    tokens = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        same_logits = torch.equal(empty.eval()(tokens).logits, full.model.eval()(tokens).logits)
    return {
        "built_on_meta": on_meta,
        "weights_equal": mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine),
        "logits_equal": same_logits,
    }


def _worker(rank: int, world: int, folder: str, llama: str | None) -> None:
    import torch.distributed as dist

    from bitplan.qat import apply, load_quant_state_dict, quant_state_dict
    from bitplan.spec import load_model
    from bitplan.train.fsdp import global_range
    from bitplan.train.loop import sr_seed
    from bitplan.train.sharded import load_sharded, save_sharded

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    torch.manual_seed(0)
    base, inputs = load_model(SPEC)
    batches = [torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(100 * step + rank)) for step in range(6)]
    report = {}
    for granularity, gradients, checkpointing in CONFIGS:
        plan = _plan(granularity, gradients)
        ddp_model = torch.nn.parallel.DistributedDataParallel(apply(copy.deepcopy(base), plan, inputs, seed=sr_seed(0, rank)))
        ddp_optimizer = torch.optim.SGD(ddp_model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        fsdp_model, fsdp_optimizer = _fsdp_model(base, plan, inputs, rank, checkpointing)
        for tokens in batches[:5]:
            _step(ddp_model, ddp_optimizer, tokens)
            _step(fsdp_model, fsdp_optimizer, tokens)
        ddp_weights, fsdp_weights = _full(ddp_model.module), _full(fsdp_model)
        sharded = dict(fsdp_model.named_parameters())  # per-tensor statistics of shards: one MAX all-reduce
        report[f"{granularity}-range"] = all(
            [t.item() for t in global_range(sharded[name])] == [t.item() for t in torch.aminmax(full)]
            for name, full in fsdp_weights.items()
        )
        key = f"{granularity}-{gradients}-{'ac' if checkpointing else 'noac'}"
        report[key] = max((ddp_weights[name] - fsdp_weights[name]).abs().max().item() for name in ddp_weights)
        start = dict(base.named_parameters())
        report[key + "-moved"] = max((fsdp_weights[name] - start[name]).abs().max().item() for name in fsdp_weights)
        # recomputing a checkpointed forward must not update the activation ranges a second time
        # (a lookup's slots observe nothing: its ids are no activation)
        report[key + "-observed"] = sorted({
            int(o.num_batches) for name, o in fsdp_model.named_modules() if hasattr(o, "num_batches")
            and not isinstance(fsdp_model.get_submodule(name.split(".bitplan_observers")[0]), torch.nn.Embedding)
        })
        # a sharded checkpoint now, and a fresh model resuming from it, must take the identical next step
        run = Path(folder) / key
        save_sharded(run, 5, fsdp_model, fsdp_optimizer, {})
        generators = quant_state_dict(fsdp_model)
        resumed, resumed_optimizer = _fsdp_model(base, plan, inputs, rank, checkpointing)
        load_sharded(run, resumed, resumed_optimizer)
        load_quant_state_dict(resumed, generators)
        loss_on, loss_resumed = _step(fsdp_model, fsdp_optimizer, batches[5]), _step(resumed, resumed_optimizer, batches[5])
        after_on, after_resumed = _full(fsdp_model), _full(resumed)
        report[key + "-resume"] = {
            "loss_equal": bool(torch.equal(loss_on, loss_resumed)),
            "weights_equal": all(torch.equal(after_on[name], after_resumed[name]) for name in after_on),
        }
    if llama is not None:
        report["materialized"] = _materialized_equals_loaded(llama, rank)
    if rank == 0:
        (Path(folder) / "report.json").write_text(json.dumps(report))
    dist.destroy_process_group()


def _tiny_llama(folder: Path) -> str | None:
    """A ``save_pretrained`` directory (odd row counts, so the two ranks' shards differ), or None without transformers."""
    try:
        import accelerate  # noqa: F401  (building on meta with real buffers)
        import transformers
    except ImportError:
        return None
    config = transformers.LlamaConfig(
        vocab_size=63, hidden_size=32, intermediate_size=47, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder / "llama")
    return str(folder / "llama")


@pytest.mark.slow
def test_fsdp2_matches_ddp_and_resumes_exactly(tmp_path):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    llama = _tiny_llama(tmp_path)
    torch.multiprocessing.spawn(_worker, args=(2, str(tmp_path), llama), nprocs=2)
    report = json.loads((tmp_path / "report.json").read_text())
    if llama is not None:  # meta init, then each rank reads its own rows of the checkpoint
        assert report["materialized"] == {"built_on_meta": True, "weights_equal": True, "logits_equal": True}
    for granularity, gradients, checkpointing in CONFIGS:
        key = f"{granularity}-{gradients}-{'ac' if checkpointing else 'noac'}"
        assert report[key] <= 1e-5, (key, report[key])
        assert report[key + "-moved"] > 1e-3, key  # five steps did train
        assert report[key + "-observed"] == [5], key
        assert report[f"{granularity}-range"], key
        assert report[key + "-resume"] == {"loss_equal": True, "weights_equal": True}, key


LM_DATA = "synthetic?n=64&test_n=17&vocab=64"  # 17 test samples: the two ranks' shards differ in length
LM_ARGS = [
    "--data", LM_DATA, "--factor", "A", "--bits", "4-8", "--act-bits", "8", "--epochs", "2", "--batch", "8",
    "--lr", "0.05", "--device", "cpu", "--threads", "1", "--no-progress",
]


def _digest(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.slow
def test_fsdp_cli_run_matches_ddp_exports_and_refuses_bad_input(tmp_path):
    from typer.testing import CliRunner

    from bitplan.cli.app import app
    from bitplan.export.checkpoint import load_trained_state
    from bitplan.train.loop import read_metrics

    runner = CliRunner()
    for parallel in ("ddp", "fsdp"):
        result = runner.invoke(app, ["train", SPEC, *LM_ARGS, "--nproc", "2", "--parallel", parallel, "-o", str(tmp_path / parallel)])
        assert result.exit_code == 0, result.output
    lines = {parallel: read_metrics(tmp_path / parallel / "seed-0") for parallel in ("ddp", "fsdp")}
    for ddp, fsdp in zip(lines["ddp"], lines["fsdp"], strict=True):
        assert fsdp["train_loss"] == pytest.approx(ddp["train_loss"], rel=1e-6)
        assert fsdp["test_loss"] == pytest.approx(ddp["test_loss"], rel=1e-3)
    assert (tmp_path / "fsdp" / "seed-0" / "checkpoint" / "latest").read_text().strip() == "epoch-2"
    sharded, plain = load_trained_state(tmp_path / "fsdp"), load_trained_state(tmp_path / "ddp")
    assert sharded.weights.keys() == plain.weights.keys() and sharded.model_spec == SPEC
    for name, value in plain.weights.items():
        torch.testing.assert_close(sharded.weights[name], value, atol=1e-5, rtol=0, msg=name)

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(json.loads((tmp_path / "fsdp" / "seed-0" / "config.json").read_text())["config"]["plan"]))
    exported = runner.invoke(app, [
        "export", SPEC, "--plan", str(plan), "--checkpoint", str(tmp_path / "fsdp"), "--format", "packed",
        "-o", str(tmp_path / "fsdp.safetensors"),
    ])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "fsdp.safetensors").stat().st_size > 0

    # bad input: each exits 2 with one paragraph and leaves no (or no changed) run folder
    before = _digest(tmp_path / "fsdp")
    other_plan = runner.invoke(app, ["train", SPEC, *LM_ARGS, "--bits", "8-8", "--nproc", "2", "--parallel", "fsdp", "--resume", "-o", str(tmp_path / "fsdp")])
    assert other_plan.exit_code == 2 and "other settings" in other_plan.output, other_plan.output
    assert _digest(tmp_path / "fsdp") == before
    other_model = runner.invoke(app, [
        "export", SPEC.replace("d_model=32", "d_model=48"), "--plan", str(plan), "--checkpoint", str(tmp_path / "fsdp"),
        "--format", "packed", "-o", str(tmp_path / "other.safetensors"),
    ])
    assert other_model.exit_code == 2 and "does not fit" in other_model.output, other_model.output
    assert not (tmp_path / "other.safetensors").exists()
    # found only inside the ranks (a global batch of 9 over 2 processes): relayed, reported once, exit 2
    uneven = runner.invoke(app, ["train", SPEC, *LM_ARGS, "--batch", "9", "--nproc", "2", "--parallel", "fsdp", "-o", str(tmp_path / "uneven")])
    assert uneven.exit_code == 2 and "multiple of 2" in uneven.output, uneven.output


def test_fsdp_with_one_process_is_refused_before_any_file(tmp_path):
    from typer.testing import CliRunner

    from bitplan.cli.app import app

    result = CliRunner().invoke(app, ["train", SPEC, *LM_ARGS, "--parallel", "fsdp", "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--nproc 2" in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_shard_refuses_a_single_process():
    from torch import nn

    from bitplan.errors import TrainingError
    from bitplan.train.fsdp import shard

    with pytest.raises(TrainingError, match="single process"):
        shard(nn.Linear(2, 2))


def test_a_torch_without_fully_shard_is_refused(monkeypatch):
    import torch.distributed.fsdp

    from bitplan.errors import TrainingError
    from bitplan.train.fsdp import fully_shard_api

    monkeypatch.delattr(torch.distributed.fsdp, "fully_shard")
    with pytest.raises(TrainingError, match="--parallel ddp"):
        fully_shard_api()
