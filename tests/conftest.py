"""Shared fixtures: tiny models with hand-checkable GEMMs; the hypothesis profile of CI.

CI (``CI`` or ``BITPLAN_CI`` set, as ``.ci/run`` does) runs property tests derandomized: the same
examples on every run, so a red CI is reproducible and never a coin flip. Locally they keep
exploring new examples (and ``--hypothesis-seed=N`` replays one exploration).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import settings
from torch import nn

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") or os.environ.get("BITPLAN_CI") else "explore")


class Branchy(nn.Module):
    """Two parallel convs from the input, summed, then a linear: depths 1, 1, 2."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.left(x) + self.right(x)).flatten(1))


class TiedLM(nn.Module):
    """Embedding whose weight the output projection reuses (tied embeddings)."""

    def __init__(self, vocab: int = 11, dim: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lm_head(torch.relu(self.mix(self.embed(tokens))))


class Attention(nn.Module):
    """One head-split self-attention block calling scaled_dot_product_attention."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=-1)
        # [B, L, D] -> [B, H, L, D/H]
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(attended.transpose(1, 2).reshape(batch, length, dim))


@pytest.fixture
def branchy() -> tuple[nn.Module, tuple]:
    return Branchy(), (torch.zeros(2, 3, 8, 8),)


@pytest.fixture
def tied_lm() -> tuple[nn.Module, tuple]:
    return TiedLM(), (torch.zeros(3, 5, dtype=torch.int64),)


@pytest.fixture
def attention() -> tuple[nn.Module, tuple]:
    return Attention(), (torch.zeros(2, 5, 8),)


@pytest.fixture
def compiled_calls(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """``torch.compile`` replaced by a stand-in that runs the quantizer recipe eagerly and records the
    tensor of every call; bitplan's kernel caches start empty, so no kernel an earlier test built is used.
    A test may install another stand-in over it (``monkeypatch.setattr(torch, "compile", ...)``)."""
    from bitplan.quant import kernels

    calls: list[torch.Tensor] = []

    def recording_compile(recipe, **options):
        def compiled(x, *args):
            calls.append(x)
            return recipe(x, *args)

        return compiled

    monkeypatch.setattr(torch, "compile", recording_compile)
    monkeypatch.setattr(kernels, "_compiled", {})
    monkeypatch.setattr(kernels, "_failed", set())
    monkeypatch.setattr(kernels, "_warm", set())
    return calls


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for the module: its models are tiny, and two shared cores are oversubscribed
    by more (a test took 3-20x longer on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory) -> tuple[str, Path]:
    """A digits CNN trained for one epoch in full precision (one thread): (model spec, its checkpoint.pt).

    Shared by the evaluation and Pareto tests, which evaluate plans on a real trained model.
    """
    from bitplan.train import TrainConfig, train_run

    out = tmp_path_factory.mktemp("trained_digits") / "run"
    config = TrainConfig(model="zoo:digits_cnn", data="digits", epochs=1, threads=1, seed=0, out=out)
    assert train_run(config, progress=False).status == "ok"
    return "zoo:digits_cnn", out / "checkpoint.pt"
