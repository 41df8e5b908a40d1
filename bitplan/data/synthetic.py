"""Random data shaped like a model's input, deterministic in the seed, with a signal a model can learn.

- Float inputs (classification): ``x = noise + template[y]``, labels uniform over ``classes``. Each
  class template is a random per-element pattern plus a random per-channel offset (the first sample
  dimension is the channel), so both models that see positions (MLPs, flattening heads) and
  translation-invariant ones (convolutions with global pooling) can separate the classes.
- Integer inputs (language modelling): a token stream from a fixed random Markov chain in which every
  token has ``_SUCCESSORS`` possible successors, so a model can reach a perplexity near that number,
  far below ``vocab``.
"""

from __future__ import annotations

import torch

from bitplan.data.augment import derive_seed
from bitplan.data.bundle import DataBundle, DataRequest, Task
from bitplan.data.datasets import LabelledTensors, TokenWindows
from bitplan.data.registry import register_source
from bitplan.data.text import DEFAULT_SEQ_LEN

__all__ = ["DEFAULT_SHAPE", "load_synthetic"]

DEFAULT_SHAPE = (3, 32, 32)  # used when neither `shape=` nor example inputs say otherwise
_PATTERN_SCALE = 0.5  # per-element std of a class template's pattern
_OFFSET_SCALE = 0.5  # std of a class template's per-channel offset
_SUCCESSORS = 4


def _classification(request: DataRequest, shape: tuple[int, ...], generator: torch.Generator) -> DataBundle:
    """Gaussian mixture: one template per class, unit-variance noise."""
    classes = request.int_option("classes", 10, minimum=2)
    channels = shape[0]
    offsets = torch.randn(classes, channels, generator=generator) * _OFFSET_SCALE  # [classes, C]
    offsets = offsets.view(classes, channels, *([1] * (len(shape) - 1)))  # [classes, C, 1, ...]
    templates = torch.randn(classes, *shape, generator=generator) * _PATTERN_SCALE + offsets  # [classes, *shape]

    def draw(count: int) -> LabelledTensors:
        labels = torch.randint(0, classes, (count,), generator=generator)  # [count]
        inputs = torch.randn(count, *shape, generator=generator) + templates[labels]  # [count, *shape]
        return LabelledTensors(inputs, labels)

    return DataBundle(
        train=draw(request.int_option("n", 512)),
        test=draw(request.int_option("test_n", 128)),
        task=Task.classification,
        num_classes=classes,
        vocab_size=None,
        input_shape=shape,
        name="synthetic",
    )


def _language_model(request: DataRequest, seq_len: int, generator: torch.Generator) -> DataBundle:
    """Windows of a Markov-chain token stream with ``_SUCCESSORS`` successors per token."""
    vocab = request.int_option("vocab", 64, minimum=2)
    successors = torch.randint(0, vocab, (vocab, _SUCCESSORS), generator=generator).tolist()  # [vocab][S]

    def draw(windows: int) -> TokenWindows:
        length = windows * seq_len + 1
        choices = torch.randint(0, _SUCCESSORS, (length,), generator=generator).tolist()
        tokens = [int(torch.randint(0, vocab, (), generator=generator))]
        for choice in choices[1:]:  # sequential by nature; plain ints keep it ~0.1 µs a token
            tokens.append(successors[tokens[-1]][choice])
        return TokenWindows(torch.tensor(tokens, dtype=torch.int64), seq_len)

    return DataBundle(
        train=draw(request.int_option("n", 512)),
        test=draw(request.int_option("test_n", 128)),
        task=Task.language_model,
        num_classes=None,
        vocab_size=vocab,
        input_shape=(seq_len,),
        name="synthetic",
    )


@register_source(
    "synthetic",
    summary="Random learnable data shaped like the model's example input (classification or LM).",
    takes_path=False,
    options={
        "n": "training samples (windows for LM); default 512",
        "test_n": "test samples; default 128",
        "classes": "number of classes for float inputs; default 10",
        "vocab": "vocabulary size for integer inputs; default 64",
        "shape": "one sample's shape, e.g. 3x32x32; default the example input's, else 3x32x32",
        "task": "classification or language_model; default from the example input's dtype",
    },
)
def load_synthetic(request: DataRequest) -> DataBundle:
    """Synthetic train/test splits; the same seed gives the same data, bit for bit."""
    example = request.example_inputs[0] if request.example_inputs else None
    inferred = Task.classification if example is None or example.is_floating_point() else Task.language_model
    task = Task(request.choice_option("task", inferred.value, [choice.value for choice in Task]))
    shape = request.shape_option("shape") or (tuple(example.shape[1:]) if example is not None else None)
    generator = torch.Generator().manual_seed(derive_seed(request.seed, 0x5EED))
    if task is Task.language_model:
        seq_len = request.seq_len or (shape[-1] if shape else DEFAULT_SEQ_LEN)
        return _language_model(request, seq_len, generator)
    if not shape:
        shape = DEFAULT_SHAPE
    return _classification(request, shape, generator)
