"""Per-level measurement (``measure_levels``) against the straightforward way: ``bitplan.apply`` a plan
with one weight at b bits to a copy of the model and run it.

The fast path swaps quantized tensors into the modules that run a weight and shares one set of
full-precision outputs; the reference applies the real plan. On a tiny transformer LM whose head is
tied to the token embedding and on a CNN with per-channel ranges, both must give the same table.
Also: a tied weight is quantized in its planned modules only, the model is left exactly as it was,
cached full-precision outputs follow the weights, and a language model's calibration batches are
capped in tokens.
"""

from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn.functional as F

from bitplan.plan.planner import plan_from_bits
from bitplan.qat import apply
from bitplan.sensitivity_analysis.calibration import MAX_TOKENS_PER_BATCH, calibrate
from bitplan.sensitivity_analysis.per_level import QuantizedWeights, measure_levels, reference_outputs

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: these models are tiny
LEVELS = [1, 2, 8]
TINY_LM = "zoo:transformer_lm?d_model=32&n_layers=1&n_heads=2&d_ff=64&seq_len=16"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    text = "".join(rng.choice("abcdefgh ij\n") for _ in range(6000))
    (folder / "train.txt").write_text(text, encoding="utf-8")
    (folder / "valid.txt").write_text(text[:1000], encoding="utf-8")
    return f"text:{folder}?level=char"


def applied_table(calibration, levels) -> tuple[dict, dict]:
    """loss_delta and KL of each weight alone at each level, by ``bitplan.apply`` on a copy of the model."""
    batches = calibration.batches

    def run(net):  # (mean loss, mean KL to the full-precision log-probabilities)
        with torch.no_grad():
            logits = [net(*inputs).flatten(0, -2) for inputs, _ in batches]
        losses = [F.cross_entropy(out, target.flatten()).item() for out, (_, target) in zip(logits, batches)]
        return sum(losses) / len(batches), [F.log_softmax(out, -1) for out in logits]

    base, reference = run(calibration.net)
    weights = list(dict.fromkeys(target.weight for target in calibration.targets))
    loss_delta, kl = {}, {}
    for weight in weights:
        loss_delta[weight], kl[weight] = {}, {}
        for bits in levels:
            chosen = {other: 32 for other in weights} | {weight: bits}
            plan = plan_from_bits(calibration.profile, chosen, levels=(*levels, 32), weight_only=True)
            loss, log_probs = run(apply(copy.deepcopy(calibration.net), plan, verify=False))
            divergences = [(ref.exp() * (ref - now)).sum(-1).mean().item() for ref, now in zip(reference, log_probs)]
            loss_delta[weight][bits], kl[weight][bits] = loss - base, sum(divergences) / len(batches)
    return loss_delta, kl


@pytest.mark.parametrize("model, data", [(TINY_LM, "corpus"), ("zoo:digits_cnn", "synthetic")])
def test_the_table_equals_applying_each_plan(model, data, request) -> None:
    data = request.getfixturevalue("corpus") if data == "corpus" else data
    calibration = calibrate(model, data, batches=2, batch_size=8, device="cpu")
    table = measure_levels(calibration, LEVELS)
    loss_delta, kl = applied_table(calibration, LEVELS)
    assert list(table.loss_delta) == list(loss_delta)
    for weight in loss_delta:
        for bits in LEVELS:
            assert table.loss_delta[weight][bits] == pytest.approx(loss_delta[weight][bits], rel=1e-5, abs=1e-6)
            assert table.kl[weight][bits] == pytest.approx(kl[weight][bits], rel=1e-4, abs=1e-7)
    assert any(row[1] > 0 for row in table.kl.values())


def test_the_model_is_left_as_it_was_and_ties_stay(corpus) -> None:
    calibration = calibrate(TINY_LM, corpus, batches=1, batch_size=4, device="cpu")
    net = calibration.net
    before = {name: (param, param.detach().clone()) for name, param in net.named_parameters()}
    weights = QuantizedWeights(calibration)
    weights.set({target.weight: 1 for target in calibration.targets})
    assert torch.equal(net.lm_head.weight, net.tok_emb.weight)  # both planned uses of the tied table: 1 bit
    assert not torch.equal(net.tok_emb.weight, before["tok_emb.weight"][1])
    weights.restore()
    assert net.lm_head.weight is net.tok_emb.weight
    after = dict(net.named_parameters())
    assert list(after) == list(before)
    assert all(after[name] is param and torch.equal(param, value) for name, (param, value) in before.items())


def test_a_tied_weights_unplanned_holder_keeps_full_precision(corpus) -> None:
    calibration = calibrate(TINY_LM, corpus, batches=1, batch_size=4, device="cpu")
    calibration.targets = [target for target in calibration.targets if target.module != "tok_emb"]  # lookup kept
    net, original = calibration.net, calibration.net.tok_emb.weight.detach().clone()
    weights = QuantizedWeights(calibration)
    weights.set({"tok_emb.weight": 1})
    assert torch.equal(net.tok_emb.weight, original) and not torch.equal(net.lm_head.weight, original)
    weights.restore()
    assert net.lm_head.weight is net.tok_emb.weight


def test_cached_outputs_follow_the_weights(corpus) -> None:
    calibration = calibrate(TINY_LM, corpus, batches=1, batch_size=4, device="cpu")
    first = reference_outputs(calibration)
    assert reference_outputs(calibration) is first  # computed once
    with torch.no_grad():
        calibration.net.blocks[0].mlp.up_proj.weight.mul_(0.5)  # an in-place write, as an optimizer step
    second = reference_outputs(calibration)
    assert second is not first and second.loss != first.loss


def test_a_language_models_calibration_batch_is_capped_in_tokens(corpus) -> None:
    seq_len = 16
    calibration = calibrate(TINY_LM, corpus, batches=1, batch_size=MAX_TOKENS_PER_BATCH, device="cpu")
    windows = MAX_TOKENS_PER_BATCH // seq_len
    inputs, _ = calibration.batches[0]
    assert inputs[0].shape[-1] == seq_len and inputs[0].shape[0] <= windows
    assert f"{windows} windows of {seq_len} tokens" in calibration.description
    small = calibrate(TINY_LM, corpus, batches=1, batch_size=8, device="cpu")
    assert small.batches[0][0][0].shape == (8, seq_len) and "batches of 8," in small.description
