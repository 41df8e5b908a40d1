"""Local Hugging Face checkpoints in and out: a ``save_pretrained`` directory is a model spec with its
weights, and exports from it load with ``from_pretrained`` giving bitplan's logits.

The tiny llama (2 layers, width 32, GQA) is saved with ``save_pretrained`` in a temporary folder;
its directory is profiled, planned and exported through the CLI. ``from_pretrained`` of the export
(default load, one forward) must give the logits ``bitplan.apply`` computes with the same plan
(weights only: the formats keep activations in float) within 1e-4.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bitplan.cli.app import app

transformers = pytest.importorskip("transformers", reason="local Hugging Face checkpoints need transformers")

runner = CliRunner()
SEQ = 8


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("llama") / "tiny-llama"
    transformers.LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def _plan(llama_dir: Path, folder: Path, bits: str, granularity: str, keep: tuple[str, ...] = ()) -> Path:
    from bitplan.choices import WeightGranularity
    from bitplan.plan import load_plan, save_plan

    path = folder / f"plan-{bits}-{granularity}{'-kept' if keep else ''}.json"
    kept = [option for name in keep for option in ("--keep", name)] + (["--keep-bits", "32"] if keep else [])
    made = runner.invoke(app, ["plan", str(llama_dir), "--factor", "A", "--strategy", "C-", "--bits", bits,
                               "--zero-point", "integer", *kept, "-o", str(path)])
    assert made.exit_code == 0, made.output
    save_plan(load_plan(path).model_copy(update={"weight_granularity": WeightGranularity(granularity), "activation_bits": None}), path)
    return path


def _bitplan_logits(llama_dir: Path, plan_path: Path, ids: torch.Tensor) -> torch.Tensor:
    from bitplan import apply
    from bitplan.spec import load_model

    loaded = load_model(str(llama_dir), options={"seq_len": str(SEQ)})
    model = apply(loaded.model, plan_path, loaded.example_inputs).eval()
    with torch.no_grad():
        return model(ids).logits


def _their_logits(directory: Path, ids: torch.Tensor) -> torch.Tensor:
    model = transformers.AutoModelForCausalLM.from_pretrained(directory)
    with torch.no_grad():
        return model(ids).logits


IDS = torch.randint(0, 64, (2, SEQ), generator=torch.Generator().manual_seed(1))
CHANNEL_UPSTREAM = (
    "compressed-tensors 0.20.1 builds the model transformers loads into with unpacked [out, 1] zero points on meta "
    "(its pack-quantized compress() packs them only off meta), so a per-channel asymmetric checkpoint, which "
    "compressed-tensors itself writes packed, is refused by from_pretrained's size check"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bits", "granularity"),
    [
        ("4-8", "tensor"),
        ("3-7", "tensor"),  # odd widths, densely packed
        pytest.param("4-8", "channel", marks=pytest.mark.xfail(reason=CHANNEL_UPSTREAM, strict=True)),
    ],
)
def test_directory_profiles_plans_and_exports_compressed_tensors_that_from_pretrained_loads(llama_dir, tmp_path, bits, granularity):
    profiled = runner.invoke(app, ["profile", str(llama_dir), "--format", "json"])
    assert profiled.exit_code == 0, profiled.output
    assert len([layer for layer in json.loads(profiled.output)["layers"] if layer.get("weight")]) == 16  # 15 GEMMs and the token lookup
    out = tmp_path / "ct"
    # transformers cannot load a compressed embedding: a plan quantizing the lookup is refused, naming the fix
    planned = _plan(llama_dir, tmp_path, bits, granularity)
    refused = runner.invoke(app, ["export", str(llama_dir), "--plan", str(planned), "--format", "compressed-tensors", "-o", str(out)])
    _refused(refused, "model.embed_tokens", "--keep model.embed_tokens")
    assert not out.exists()
    plan = _plan(llama_dir, tmp_path, bits, granularity, keep=("model.embed_tokens",))
    exported = runner.invoke(app, ["export", str(llama_dir), "--plan", str(plan), "--format", "compressed-tensors", "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    torch.testing.assert_close(_their_logits(out, IDS), _bitplan_logits(llama_dir, plan, IDS), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_hf_export_is_a_checkpoint_from_pretrained_loads_and_bitplan_reads_back(llama_dir, tmp_path):
    from bitplan.plan import load_plan

    plan = _plan(llama_dir, tmp_path, "4-8", "channel")
    out = tmp_path / "hf"
    exported = runner.invoke(app, ["export", f"hf:{llama_dir}", "--plan", str(plan), "--format", "hf", "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    assert load_plan(out / "bitplan_plan.json").fingerprint == load_plan(plan).fingerprint
    ours = _bitplan_logits(llama_dir, plan, IDS)
    torch.testing.assert_close(_their_logits(out, IDS), ours, atol=1e-4, rtol=0)
    # the export is itself a spec: its weights are already on the plan's grid, so applying the plan changes nothing
    torch.testing.assert_close(_bitplan_logits(out, plan, IDS), ours, atol=1e-5, rtol=0)


def test_directory_loads_its_own_weights(llama_dir):
    from bitplan.spec import load_model

    saved = transformers.AutoModelForCausalLM.from_pretrained(llama_dir)
    loaded = load_model(f"hf:{llama_dir}?seq_len=4")
    assert loaded.example_inputs[0].shape == (1, 4)
    for (name, mine), theirs in zip(loaded.model.state_dict().items(), saved.state_dict().values(), strict=True):
        assert torch.equal(mine, theirs), name


def _refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


def test_directory_without_weights_is_refused(llama_dir, tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    shutil.copy(llama_dir / "config.json", empty / "config.json")
    plan = _plan(llama_dir, tmp_path, "4-8", "channel")
    _refused(runner.invoke(app, ["profile", str(empty)]), "no weights")
    _refused(runner.invoke(app, ["export", str(empty), "--plan", str(plan), "--format", "hf", "-o", str(tmp_path / "o")]), "no weights")
    assert not (tmp_path / "o").exists()
    _refused(runner.invoke(app, ["train", str(empty), "--data", "synthetic", "--epochs", "1", "-o", str(tmp_path / "run")]), "no weights")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*.json"))
    (empty / "pytorch_model.bin").write_bytes(b"not read")
    _refused(runner.invoke(app, ["profile", str(empty)]), "pytorch_model.bin", "unpickling")


def test_safetensors_with_missing_keys_is_refused(llama_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    damaged = tmp_path / "damaged"
    shutil.copytree(llama_dir, damaged)
    state = load_file(damaged / "model.safetensors")
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, damaged / "model.safetensors", metadata={"format": "pt"})
    result = runner.invoke(app, ["train", str(damaged), "--data", "synthetic?vocab=64&shape=8", "--factor", "A",
                                 "--strategy", "C-", "--epochs", "1", "--device", "cpu", "-o", str(tmp_path / "run")])
    _refused(result, "model.layers.1.mlp.up_proj.weight", "random")
    assert not any((tmp_path / "run").rglob("*.json")) if (tmp_path / "run").exists() else True


@pytest.mark.slow
def test_train_from_a_directory_fine_tunes_its_weights(llama_dir, tmp_path):
    from bitplan.export.checkpoint import load_trained_state

    result = runner.invoke(app, [
        "train", str(llama_dir), "--data", f"synthetic?n=16&test_n=8&vocab=64&shape={SEQ}", "--factor", "A",
        "--strategy", "C-", "--bits", "4-8", "--epochs", "1", "--batch", "8", "--lr", "1e-4", "--device", "cpu",
        "--threads", "1", "--no-progress", "-o", str(tmp_path / "run"),
    ])
    assert result.exit_code == 0, result.output
    trained = load_trained_state(tmp_path / "run").weights
    start = transformers.AutoModelForCausalLM.from_pretrained(llama_dir).state_dict()
    moved = max((trained[key] - value).abs().max().item() for key, value in start.items() if key in trained)
    assert 0 < moved < 1e-2  # two small steps from the checkpoint's weights, not from a fresh initialisation


@pytest.mark.slow
def test_hf_trainer_trains_a_prepared_model_and_logs_the_plan(llama_dir, tmp_path):
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate")
    from safetensors.torch import load_file

    from bitplan.integrations.hf import BitplanCallback, prepare
    from bitplan.plan import load_plan

    plan_path = _plan(llama_dir, tmp_path, "4-8", "channel")
    plan = load_plan(plan_path).model_copy(update={"activation_bits": 8, "gradient_bits": 8})
    model = transformers.AutoModelForCausalLM.from_pretrained(llama_dir)
    start = {key: value.clone() for key, value in model.state_dict().items()}
    prepare(model, plan, (torch.zeros(1, SEQ, dtype=torch.int64),))
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "QuantizedLinear"
    generator = torch.Generator().manual_seed(0)
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (8, SEQ), generator=generator)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "trainer"), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-3,
        logging_steps=1, save_steps=3, report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[BitplanCallback(plan)])
    trainer.train()
    logged = [line for line in trainer.state.log_history if "loss" in line]
    assert len(logged) == 3 and all(line["bitplan/mbit"] == plan.estimates.mbit for line in logged)
    assert logged[0]["bitplan/gbitops_training"] == pytest.approx(plan.estimates.bitops_training / 1e9)
    trained = model.state_dict()
    assert max((trained[key] - value).abs().max().item() for key, value in start.items()) > 0
    # the activation ranges are state: in the state dict and in the Trainer's checkpoint
    key = "model.layers.0.self_attn.q_proj.bitplan_observer.running_max"
    assert trained[key] > 0
    saved = load_file(tmp_path / "trainer" / "checkpoint-3" / "model.safetensors")
    assert torch.equal(saved[key], trained[key])


def test_plan_ties_fused_groups_by_default_for_hf_models_and_strict_export_refuses_untied(llama_dir, tmp_path):
    def widths(tie: list[str]) -> dict[str, int]:
        path = tmp_path / f"plan{len(tie)}.json"
        made = runner.invoke(app, ["plan", str(llama_dir), "--factor", "capacity", "--strategy", "C+", "--bits", "2-8",
                                   "--keep", "model.embed_tokens", "--keep-bits", "32", *tie, "-o", str(path)])
        assert made.exit_code == 0, made.output
        return {layer["name"].removeprefix("model.layers.0."): layer["bits"] for layer in json.loads(path.read_text())["layers"]}

    untied, tied = widths(["--tie", "none"]), widths([])
    # GQA: k/v are half of q's size, so ranking by capacity splits them unless they are tied
    assert untied["self_attn.q_proj"] != untied["self_attn.k_proj"]
    assert tied["self_attn.q_proj"] == tied["self_attn.k_proj"] == tied["self_attn.v_proj"]
    assert tied["mlp.gate_proj"] == tied["mlp.up_proj"]
    refused = runner.invoke(app, ["export", str(llama_dir), "--plan", str(tmp_path / "plan2.json"), "--format",
                                  "compressed-tensors", "--strict", "-o", str(tmp_path / "ct")])
    _refused(refused, "self_attn.q_proj", "--tie fused")
    assert not (tmp_path / "ct").exists()


@pytest.mark.slow
def test_fsdp_from_a_directory_builds_on_meta_and_trains_like_one_process(llama_dir, tmp_path):
    """Two gloo ranks shard the checkpoint built on meta, each reading its own rows; activation
    checkpointing on. Same global batch as one process, so the losses agree to summation order."""
    pytest.importorskip("accelerate", reason="building a checkpoint's model on meta uses accelerate")
    from bitplan.train.loop import read_metrics

    args = ["train", str(llama_dir), "--data", f"synthetic?n=32&test_n=9&vocab=64&shape={SEQ}", "--factor", "A",
            "--strategy", "C-", "--bits", "4-8", "--epochs", "2", "--batch", "8", "--lr", "0.01", "--device", "cpu",
            "--threads", "1", "--no-progress"]
    sharded = runner.invoke(app, [*args, "--nproc", "2", "--parallel", "fsdp", "--activation-checkpointing", "-o", str(tmp_path / "fsdp")])
    assert sharded.exit_code == 0, sharded.output
    single = runner.invoke(app, [*args, "-o", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    lines = {name: read_metrics(tmp_path / name / "seed-0") for name in ("fsdp", "one")}
    for mine, theirs in zip(lines["fsdp"], lines["one"], strict=True):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)
        assert mine["test_loss"] == pytest.approx(theirs["test_loss"], rel=1e-3)
    assert (tmp_path / "fsdp" / "seed-0" / "checkpoint" / "latest").is_file()
