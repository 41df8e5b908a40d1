"""Decoder-only transformer LM in two styles: GPT-2 and Llama.

- gpt2: LayerNorm, GELU MLP, learned positions, biases, embedding tied to the output head by default.
- llama: RMSNorm, SwiGLU MLP, rotary positions (RoPE), no biases, untied head.

Attention calls ``F.scaled_dot_product_attention(q, k, v, is_causal=True)`` so the profiler sees QKᵀ and
A·V as two GEMMs. The RoPE tables are precomputed buffers and there is no per-token Python loop, so a
Llama-2-7B-shaped model builds on the meta device and exports in seconds.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from bitplan.zoo.configs import LanguageModelConfig
from bitplan.zoo.registry import register


class Preset(str, Enum):
    """Named shapes; explicit options override a preset's values."""

    tiny = "tiny"
    gpt2 = "gpt2"
    llama2_7b = "llama2-7b"


class Style(str, Enum):
    """Block recipe: GPT-2 (LayerNorm, GELU, learned positions) or Llama (RMSNorm, SwiGLU, RoPE)."""

    gpt2 = "gpt2"
    llama = "llama"


PRESETS: dict[Preset, dict[str, Any]] = {
    Preset.tiny: dict(vocab=1000, seq_len=64, d_model=128, n_layers=2, n_heads=4, d_ff=512, style=Style.gpt2),
    Preset.gpt2: dict(vocab=50257, seq_len=128, d_model=768, n_layers=12, n_heads=12, d_ff=3072, style=Style.gpt2),
    Preset.llama2_7b: dict(
        vocab=32000, seq_len=128, d_model=4096, n_layers=32, n_heads=32, d_ff=11008, style=Style.llama
    ),
}


class TransformerConfig(LanguageModelConfig):
    """Shape of the LM; any option not given comes from ``preset`` (default ``tiny``)."""

    preset: Preset = Field(default=Preset.tiny, description="Named shape the other options default to.")
    vocab: int = Field(ge=2, description="Vocabulary size.")
    seq_len: int = Field(ge=1, description="Tokens per example input; also the maximum context length.")
    d_model: int = Field(ge=1, description="Hidden size.")
    n_layers: int = Field(ge=1, description="Transformer blocks.")
    n_heads: int = Field(ge=1, description="Attention heads (must divide d_model).")
    d_ff: int = Field(ge=1, description="MLP hidden size.")
    style: Style = Field(description="gpt2 (LayerNorm, GELU, learned positions) or llama (RMSNorm, SwiGLU, RoPE).")
    tie_weights: bool = Field(description="Share the token embedding with the output head (default: style gpt2).")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on embeddings and residual branches.")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        """Options the user did not give take the preset's values; tie_weights follows the style."""
        if not isinstance(data, dict):
            return data
        preset_name = data.get("preset", Preset.tiny)
        valid = [preset.value for preset in Preset]
        if str(getattr(preset_name, "value", preset_name)) not in valid:
            raise ValueError(f"`preset` must be one of {', '.join(valid)}, got {preset_name!r}")
        filled = {**PRESETS[Preset(preset_name)], **data}
        filled.setdefault("tie_weights", str(getattr(filled["style"], "value", filled["style"])) == Style.gpt2.value)
        return filled

    @model_validator(mode="after")
    def _heads_fit(self) -> TransformerConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"`d_model` ({self.d_model}) must be divisible by `n_heads` ({self.n_heads})")
        if self.style is Style.llama and (self.d_model // self.n_heads) % 2:
            raise ValueError(f"RoPE needs an even head size; `d_model`/`n_heads` is {self.d_model // self.n_heads}")
        return self

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


def rope_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, each [seq_len, head_dim] (the half-split layout of Llama)."""
    inverse_frequency = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # [hd/2]
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inverse_frequency)  # [T, hd/2]
    angles = torch.cat((angles, angles), dim=-1)  # [T, hd]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate q or k ([B, H, T, hd]) by position; cos/sin are [T, hd]."""
    first, second = x.chunk(2, dim=-1)  # [B, H, T, hd/2] each
    rotated = torch.cat((-second, first), dim=-1)  # [B, H, T, hd]
    return x * cos + rotated * sin


class Attention(nn.Module):
    """Causal multi-head self-attention with separate q/k/v/o projections."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        bias = config.style is Style.gpt2
        self.n_heads = config.n_heads
        self.q_proj = nn.Linear(config.d_model, config.d_model, bias=bias)
        self.k_proj = nn.Linear(config.d_model, config.d_model, bias=bias)
        self.v_proj = nn.Linear(config.d_model, config.d_model, bias=bias)
        self.o_proj = nn.Linear(config.d_model, config.d_model, bias=bias)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        batch, length, width = x.shape  # [B, T, D]
        q, k, v = (
            proj(x).reshape(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2)  # [B, H, T, hd]
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, hd]
        return self.o_proj(y.transpose(1, 2).reshape(batch, length, width))  # [B, T, D]


class Mlp(nn.Module):
    """GELU MLP (gpt2) or SwiGLU (llama: down(silu(gate(x)) · up(x)))."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        bias = config.style is Style.gpt2
        self.gate_proj = nn.Linear(config.d_model, config.d_ff, bias=False) if config.style is Style.llama else None
        self.up_proj = nn.Linear(config.d_model, config.d_ff, bias=bias)
        self.down_proj = nn.Linear(config.d_ff, config.d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, T, D]
        if self.gate_proj is None:
            hidden = F.gelu(self.up_proj(x), approximate="tanh")  # [B, T, d_ff]
        else:
            hidden = F.silu(self.gate_proj(x)) * self.up_proj(x)  # [B, T, d_ff]
        return self.down_proj(hidden)  # [B, T, D]


def make_norm(config: TransformerConfig) -> nn.Module:
    return nn.LayerNorm(config.d_model) if config.style is Style.gpt2 else nn.RMSNorm(config.d_model, eps=1e-5)


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.attn_norm = make_norm(config)
        self.attn = Attention(config)
        self.mlp_norm = make_norm(config)
        self.mlp = Mlp(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), rope))  # [B, T, D]
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class TransformerLM(nn.Module):
    """Token ids [B, T] → logits [B, T, vocab]; T may be at most ``seq_len``."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab, config.d_model)
        self.pos_emb = nn.Embedding(config.seq_len, config.d_model) if config.style is Style.gpt2 else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = make_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab, bias=False)
        self.use_rope = config.style is Style.llama
        if self.use_rope:
            cos, sin = rope_tables(config.seq_len, config.head_dim)
            self.register_buffer("rope_cos", cos, persistent=False)  # [seq_len, hd]
            self.register_buffer("rope_sin", sin, persistent=False)
        self._init_weights(config)
        if config.tie_weights:
            self.lm_head.weight = self.tok_emb.weight

    def _init_weights(self, config: TransformerConfig) -> None:
        """GPT-2 init: N(0, 0.02), zero biases, residual projections scaled by 1/√(2·n_layers).

        Skipped on the meta device: there are no values to set, and meta ``normal_`` costs ~4 ms per
        call, which would add seconds to building a 7B-shaped model for profiling.
        """
        if self.tok_emb.weight.is_meta:
            return
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = 0.02 / math.sqrt(2 * config.n_layers) if name.endswith(("o_proj", "down_proj")) else 0.02
                nn.init.normal_(module.weight, 0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens: [B, T] int64
        length = tokens.shape[1]
        x = self.tok_emb(tokens)  # [B, T, D]
        if self.pos_emb is not None:
            x = x + self.pos_emb.weight[:length]  # [T, D] broadcast over B
        rope = (self.rope_cos[:length], self.rope_sin[:length]) if self.use_rope else None  # [T, hd] each
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rope)
        return self.lm_head(self.norm(x))  # [B, T, vocab]


@register("transformer_lm", TransformerConfig, description="Decoder-only transformer LM (presets tiny, gpt2, llama2-7b)")
def transformer_lm(config: TransformerConfig) -> nn.Module:
    return TransformerLM(config)
