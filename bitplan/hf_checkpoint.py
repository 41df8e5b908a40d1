"""Local Hugging Face checkpoints as model specs: a directory with ``config.json`` and safetensors weights.

``bitplan profile DIR`` (or ``hf:DIR``) and every other command load the architecture from the
directory's ``config.json`` and its real weights, offline (``local_files_only``), in float32. Only
safetensors are read (pickled ``pytorch_model.bin`` files could run code) and never remote code. A
checkpoint that does not cover every parameter of its architecture is refused instead of being
silently filled with random values. On the meta device (profiling) only the config is read.
"""

from __future__ import annotations

from pathlib import Path

from bitplan.errors import SpecError

WEIGHT_PATTERNS = ("model.safetensors", "model.safetensors.index.json", "*.safetensors")
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory (empty when it holds none)."""
    found: list[Path] = []
    for pattern in WEIGHT_PATTERNS:
        found += [path for path in sorted(directory.glob(pattern)) if path not in found]
    return found


def load_hf_directory(directory: Path, head: str | None, overrides: dict[str, object]):
    """``(model, config)`` of the checkpoint in ``directory``, weights loaded (built on meta: none).

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

    from bitplan.spec import hf_head_model

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
    if torch.get_default_device().type == "meta":
        return auto.from_config(config), config
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
