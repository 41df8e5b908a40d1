"""Local Hugging Face checkpoints as model specs: a directory with ``config.json`` and safetensors weights.

``bitplan profile DIR`` (or ``hf:DIR``) and every other command load the architecture from the
directory's ``config.json`` and its real weights, offline (``local_files_only``), in float32. Only
safetensors are read (pickled ``pytorch_model.bin`` files could run code) and never remote code. A
checkpoint that does not cover every parameter of its architecture is refused instead of being
silently filled with random values. On the meta device (profiling) only the config is read.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from bitplan.errors import SpecError

WEIGHT_PATTERNS = ("model.safetensors", "model.safetensors.index.json", "*.safetensors")
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")


HF_HEADS = {
    "causal_lm": "AutoModelForCausalLM",
    "masked_lm": "AutoModelForMaskedLM",
    "seq2seq_lm": "AutoModelForSeq2SeqLM",
    "base": "AutoModel",
}


def is_hf_directory(text: str) -> bool:
    """Whether ``text`` names a local Hugging Face checkpoint: a directory holding ``config.json``."""
    return "?" not in text and Path(text).is_dir() and (Path(text) / "config.json").is_file()


def hf_head_model(transformers: ModuleType, config: object, head: str | None, spec: str) -> type:
    """The Auto class for ``head`` (None: ``default_head``), refusing a head the architecture lacks."""
    head = head or default_head(transformers, config)
    if head not in HF_HEADS:
        raise SpecError(f"`head={head}` is not one of {', '.join(HF_HEADS)}; write e.g. `hf:bert?head=masked_lm`")
    auto = getattr(transformers, HF_HEADS[head])
    mapping = getattr(auto, "_model_mapping", None)
    if mapping is not None and type(config) not in mapping:
        raise SpecError(f"`{spec}` has no {head} model; pass another `head=` ({', '.join(HF_HEADS)})")
    return auto


def default_head(transformers: ModuleType, config: object) -> str:
    """seq2seq_lm for encoder–decoder configs, masked_lm for encoder-only ones, else causal_lm."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq_lm"
    mappings = transformers.models.auto.modeling_auto
    masked = config.model_type in mappings.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    causal = config.model_type in mappings.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    return "masked_lm" if masked and (not causal or not getattr(config, "is_decoder", True)) else "causal_lm"


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory (empty when it holds none)."""
    found: list[Path] = []
    for pattern in WEIGHT_PATTERNS:
        found += [path for path in sorted(directory.glob(pattern)) if path not in found]
    return found


def load_hf_directory(directory: Path, head: str | None, overrides: dict[str, object], *, empty: bool = False):
    """``(model, config)`` of the checkpoint in ``directory``, weights loaded (built on meta: none).

    With ``empty`` the parameters stay on meta and the buffers (rotary tables) are real: what FSDP2
    shards before each rank reads its own rows of the weights (``bitplan.train.fsdp.materialize``).

    Args:
        directory: Holds ``config.json`` and ``*.safetensors`` (as ``save_pretrained`` writes).
        head: Which Auto class (``causal_lm``, ``masked_lm``, ``seq2seq_lm``, ``base``); None: from the config.
        overrides: Config fields to change (e.g. ``use_cache=False``).

    Raises:
        SpecError: transformers is missing, the directory holds no (safetensors) weights, its config
            names an architecture transformers does not know, or the weights miss parameters or
            have other shapes than the architecture.
    """
    import torch
    import transformers

    spec = f"hf:{directory}"
    files = weight_files(directory)
    if not files:
        pickled = [name for name in PICKLED if (directory / name).is_file()]
        reason = (
            f"only pickled weights ({', '.join(pickled)}), which bitplan does not load because unpickling can run code"
            if pickled else "no weights (no *.safetensors file)"
        )
        raise SpecError(
            f"checkpoint directory `{directory}` has config.json but {reason}; save the model there with "
            "`model.save_pretrained(DIR)` (safetensors is its default), or name the architecture alone with "
            "`hf:MODEL_TYPE` for random weights"
        )
    try:
        config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True, **overrides)
    except (ValueError, KeyError, OSError) as error:
        raise SpecError(
            f"`{directory}/config.json` cannot be read by transformers {transformers.__version__} "
            f"({str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__}); "
            "bitplan never runs a checkpoint's own code, so its architecture must be one transformers ships"
        ) from None
    auto = hf_head_model(transformers, config, head, spec)
    if empty or torch.get_default_device().type == "meta":
        # from_config leaves tied weights (tie_word_embeddings) untied until tie_weights; from_pretrained ties them
        if empty:
            try:
                from accelerate import init_empty_weights
            except ImportError:
                raise SpecError(
                    f"building `{spec}` with its parameters on meta (FSDP2 reads each rank's rows) needs accelerate, "
                    "which is not installed; install it (`pip install 'bitplan[hf]'`)"
                ) from None

            with torch.device("cpu"), init_empty_weights(include_buffers=False):
                model = auto.from_config(config)
        else:
            model = auto.from_config(config)
        model.tie_weights()
        return model, config
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # bitplan's own progress goes to stderr
    try:
        model, info = auto.from_pretrained(
            directory, config=config, local_files_only=True, output_loading_info=True, dtype=torch.float32
        )
    except (ValueError, OSError, RuntimeError) as error:
        raise SpecError(
            f"the weights in `{directory}` cannot be loaded ({str(error).strip().splitlines()[0][:300]}); "
            "save the checkpoint again with `save_pretrained`"
        ) from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys", ()))
    mismatched = sorted(str(item[0]) if isinstance(item, tuple) else str(item) for item in info.get("mismatched_keys", ()))
    if missing or mismatched:
        problem = ", ".join(
            part for part in (
                f"missing {len(missing)} ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})" if missing else "",
                f"other shapes for {', '.join(mismatched[:4])}" if mismatched else "",
            ) if part
        )
        raise SpecError(
            f"the safetensors in `{directory}` do not cover its architecture's parameters: {problem}; "
            "loading would fill them with random values. Save the complete model with `save_pretrained`, or "
            "check that config.json belongs to these weights"
        )
    return model, config
