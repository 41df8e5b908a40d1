"""Fused groups: layers a serving stack runs as one GEMM, so they must share one quantization scheme.

vLLM (and TensorRT-LLM, SGLang) load q/k/v projections as one ``qkv_proj`` and gate/up as one
``gate_up_proj`` (their ``packed_modules_mapping``), and take the scheme of the first shard for the
fused layer without checking that the others agree. A plan giving those layers different widths is
then served wrong. A fused group here is two or more sibling layers (same parent module) whose last
names form one of the fused sets below and whose GEMMs reduce over the same input width.
``plan --tie fused`` plans each group as one unit (one width); compressed-tensors' ``--strict``
export refuses a plan whose groups disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

FUSED_SETS: tuple[frozenset[str], ...] = (
    frozenset({"q_proj", "k_proj", "v_proj"}),  # llama, mistral, qwen, gemma, phi-3 (split), opt
    frozenset({"query", "key", "value"}),  # bert, roberta
    frozenset({"wq", "wk", "wv"}),  # meta's llama reference, torchtitan
    frozenset({"gate_proj", "up_proj"}),  # llama-family MLPs
    frozenset({"w1", "w3"}),  # mixtral experts, torchtitan's feed-forward
)
"""Sibling names that serving stacks fuse into one GEMM (vLLM's ``packed_modules_mapping``)."""


def fused_groups(layers: Iterable[tuple[str, int]]) -> list[list[str]]:
    """The fused groups among ``layers``, given as (module name, input width K) in graph order.

    Example:
        >>> fused_groups([("a.q_proj", 8), ("a.k_proj", 8), ("a.v_proj", 8), ("a.o_proj", 8), ("b.up_proj", 8)])
        [['a.q_proj', 'a.k_proj', 'a.v_proj']]
    """
    buckets: dict[tuple[str, frozenset[str], int], list[str]] = {}
    for name, width in layers:
        parent, _, leaf = name.rpartition(".")
        for fused in FUSED_SETS:
            if leaf in fused:
                buckets.setdefault((parent, fused, width), []).append(name)
    return [names for names in buckets.values() if len(names) >= 2]
