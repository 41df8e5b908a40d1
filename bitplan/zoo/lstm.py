"""2-layer LSTM language model (Zaremba et al. 2014 "small"; PyTorch's word_language_model defaults).

The recurrent layers are one ``nn.LSTM(num_layers=2)`` named ``rnn``, so the profiler reports its GEMMs
by weight parameter: ``rnn.weight_ih_l0``, ``rnn.weight_hh_l0``, ``rnn.weight_ih_l1``, ``rnn.weight_hh_l1``.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from bitplan.zoo.configs import LanguageModelConfig
from bitplan.zoo.registry import register


class Lstm2Config(LanguageModelConfig):
    """PTB-sized defaults: 10k words, 200-unit embedding and LSTM, 35-token sequences."""

    embed: int = Field(default=200, ge=1, description="Embedding size.")
    hidden: int = Field(default=200, ge=1, description="LSTM hidden size (both layers).")
    dropout: float = Field(
        default=0.2, ge=0, lt=1, description="Dropout on the embedding, between and after the LSTM layers."
    )
    tie_weights: bool = Field(default=False, description="Share the embedding with the decoder (needs embed == hidden).")

    @model_validator(mode="after")
    def _tied_sizes_match(self) -> Lstm2Config:
        if self.tie_weights and self.embed != self.hidden:
            raise ValueError(f"`tie_weights` needs `embed` ({self.embed}) equal to `hidden` ({self.hidden})")
        return self


class LstmLM(nn.Module):
    """Embedding → dropout → 2-layer LSTM → dropout → linear decoder to vocabulary logits."""

    def __init__(self, config: Lstm2Config) -> None:
        super().__init__()
        self.encoder = nn.Embedding(config.vocab, config.embed)
        self.drop = nn.Dropout(config.dropout)
        self.rnn = nn.LSTM(config.embed, config.hidden, num_layers=2, dropout=config.dropout, batch_first=True)
        self.decoder = nn.Linear(config.hidden, config.vocab)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if config.tie_weights:
            self.decoder.weight = self.encoder.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens: [B, T] int64
        x = self.drop(self.encoder(tokens))  # [B, T, embed]
        x, _ = self.rnn(x)  # [B, T, hidden]; zero initial state
        return self.decoder(self.drop(x))  # [B, T, vocab]


@register("lstm2", Lstm2Config, description="2-layer LSTM language model (PTB-sized)")
def lstm2(config: Lstm2Config) -> nn.Module:
    return LstmLM(config)
