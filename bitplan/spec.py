"""One resolver for every way a user names a model: ``zoo:``, files, modules, torchvision, hf, ONNX.

``load_model`` is what every command and every user script calls, so a spec means the same model
everywhere. ``profile_spec`` adds ONNX files and builds zoo models on the meta device.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from bitplan.choices import RoutingChoice, TracerChoice
from bitplan.errors import SpecError, TraceError
from bitplan.profile.schema import ModelProfile

if TYPE_CHECKING:  # torch is imported where a model is built, so profiling an ONNX file never loads it
    import torch
    from torch import nn

# dtype spelling in an input shape -> attribute of torch
_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "float16": "float16",
    "bfloat16": "bfloat16", "int64": "int64", "long": "int64", "int32": "int32",
}


@dataclass(frozen=True)
class LoadedModel:
    """A model, the positional inputs of one forward call, and the spec it came from.

    Unpacks as the ``(model, example_inputs)`` pair a factory returns:
    ``model, inputs = load_model("zoo:resnet20")``.
    """

    model: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    spec: str

    def __iter__(self) -> Iterator[nn.Module | tuple[torch.Tensor, ...]]:
        return iter((self.model, self.example_inputs))


Resolver = Callable[[str, dict[str, str]], "tuple[nn.Module, tuple | None]"]
_RESOLVERS: dict[str, Resolver] = {}


def _resolver(prefix: str) -> Callable[[Resolver], Resolver]:
    def register(function: Resolver) -> Resolver:
        _RESOLVERS[prefix] = function
        return function

    return register


def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``'zoo:mobilenet_v2?width=0.5'`` → (``'zoo:mobilenet_v2'``, ``{'width': '0.5'}``)."""
    base, _, query = spec.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise SpecError(
            f"the options in `{spec}` are not `key=value` pairs joined by `&`; write e.g. `zoo:mobilenet_v2?width=0.5`"
        ) from None
    return base, options


@_resolver("zoo")
def _zoo(name: str, options: dict[str, str]) -> tuple[nn.Module, tuple]:
    from bitplan import zoo

    return zoo.build(name, options)


@_resolver("torchvision")
def _torchvision(name: str, options: dict[str, str]) -> tuple[nn.Module, tuple]:
    """A torchvision architecture with random weights: ``weights`` and ``weights_backbone`` are None
    unless given, so nothing downloads."""
    torchvision = import_torchvision(name)
    settings = {"weights": None, **_typed(options)}
    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError as error:
        raise SpecError(f"torchvision has no model `{name}` ({error}); see torchvision.models.list_models()") from None
    if "weights_backbone" in inspect.signature(builder).parameters:
        settings.setdefault("weights_backbone", None)
    try:
        model = builder(**settings)
    except (TypeError, ValueError) as error:
        raise SpecError(f"`torchvision:{name}` does not accept these options ({error}); check the builder's arguments") from None
    return model, torchvision_inputs(builder.__module__, model, _weights_metadata(torchvision, name))


def torchvision_inputs(family: str, model: nn.Module, weights: dict) -> tuple[torch.Tensor, ...]:
    """The example input of a torchvision model built with ``weights=None`` (docs/models.md, "torchvision").

    Args:
        family: the builder's module (``torchvision.models.video.resnet``, ``...optical_flow.raft``).
        model: the built model: a size it was constructed with (``image_size``, ``input_size``) wins
            over its weights' metadata, which describes the model built *with* those weights.
        weights: the first weights' transform settings and meta (``crop_size``, ``resize_size``,
            ``min_temporal_size``); empty when the model has none.

    Returns:
        Video models: one clip 1×3×T×H×W with T = max(16, ``min_temporal_size``) frames. Optical flow
        (RAFT): two images 1×3×H×W. Other models: one image 1×3×H×W. H = W = the model's own size,
        else the weights' crop size, else their resize size, else 224.
    """
    import torch

    size = _own_size(model) or _first(weights.get("crop_size")) or _first(weights.get("resize_size")) or DEFAULT_IMAGE_SIZE
    if ".video." in family:
        frames = max(CLIP_FRAMES, int(weights.get("min_temporal_size") or 0))
        return (torch.zeros(1, 3, frames, size, size),)
    if ".optical_flow." in family:
        return (torch.zeros(1, 3, size, size), torch.zeros(1, 3, size, size))
    return (torch.zeros(1, 3, size, size),)


def _own_size(model: nn.Module) -> int | None:
    """A square input size the model was constructed with (ViT's ``image_size``), if it keeps one."""
    for attribute in ("image_size", "input_size", "img_size"):
        size = _first(getattr(model, attribute, None))
        if size:
            return size
    return None


def _first(value: object) -> int | None:
    """An int, or the first of a sequence of ints (``(112, 112)``); None for anything else."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _weights_metadata(torchvision: ModuleType, name: str) -> dict:
    """The first weights' transform settings and meta of a model (``{}`` when it has no weights)."""
    try:
        weights = list(torchvision.models.get_model_weights(name))
    except (ValueError, KeyError, AttributeError):
        return {}
    if not weights:
        return {}
    return {**getattr(weights[0], "meta", {}), **getattr(getattr(weights[0], "transforms", None), "keywords", {})}


DEFAULT_IMAGE_SIZE = 224
CLIP_FRAMES = 16  # Kinetics clips: every torchvision video model is trained and evaluated on 16 frames or more


def import_torchvision(name: str) -> ModuleType:
    """Import torchvision, turning any failure (missing, or compiled for another torch) into a SpecError."""
    try:
        import torchvision
    except ImportError:
        raise SpecError(
            f"`torchvision:{name}` needs the optional package torchvision, which is not installed; "
            "install it (`pip install torchvision`) or use a `zoo:` model"
        ) from None
    except Exception as error:  # a torchvision built for another torch fails in its compiled ops, not ImportError
        import torch

        try:
            installed = importlib.metadata.version("torchvision")
        except importlib.metadata.PackageNotFoundError:
            installed = "unknown"
        raise SpecError(
            f"`torchvision:{name}`: torchvision {installed} does not match torch {torch.__version__} (importing it "
            f"raised {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}). "
            "Install the torchvision release built for this torch (same CUDA or CPU variant, e.g. "
            "`pip install torchvision --index-url https://download.pytorch.org/whl/cpu` for CPU torch), or use a "
            "`zoo:` model"
        ) from None
    return torchvision


@_resolver("hf")
def _huggingface(name: str, options: dict[str, str]) -> tuple[nn.Module, tuple]:
    """Build a transformers architecture from a locally constructed config; never downloads.

    Options: ``seq_len`` (tokens of the example input, default 128), ``head`` (which Auto class:
    ``causal_lm``, ``masked_lm``, ``seq2seq_lm`` or ``base``; default from the config: encoder–decoder
    models are ``seq2seq_lm``, encoder-only ones ``masked_lm``, the rest ``causal_lm``), and any config
    field (``hidden_size=64``, ``num_hidden_layers=2``, ``use_cache=false``). docs/models.md lists them.
    """
    try:
        import transformers
    except ImportError:
        raise SpecError(
            f"`hf:{name}` needs the optional package transformers, which is not installed; "
            "install it (`pip install transformers`) or use `zoo:transformer_lm`"
        ) from None
    settings = _typed(options)
    seq_len = int(settings.pop("seq_len", 128))
    head = settings.pop("head", None)
    try:
        config = transformers.AutoConfig.for_model(name, **settings)
    except ValueError as error:
        raise SpecError(f"transformers has no model type `{name}` ({error}); use e.g. `hf:gpt2` or `hf:llama`") from None
    head = head or _default_head(transformers, config)
    if head not in HF_HEADS:
        raise SpecError(f"`head={head}` is not one of {', '.join(HF_HEADS)}; write e.g. `hf:bert?head=masked_lm`")
    try:
        model = getattr(transformers, HF_HEADS[head]).from_config(config)
    except ValueError as error:
        raise SpecError(f"`hf:{name}` has no {head} model ({error}); pass another `head=` ({', '.join(HF_HEADS)})") from None
    import torch

    ids = torch.zeros(1, seq_len, dtype=torch.int64)
    if config.is_encoder_decoder:  # forward(input_ids, attention_mask, decoder_input_ids)
        return model, (ids, None, torch.zeros(1, seq_len, dtype=torch.int64))
    return model, (ids,)


HF_HEADS = {
    "causal_lm": "AutoModelForCausalLM",
    "masked_lm": "AutoModelForMaskedLM",
    "seq2seq_lm": "AutoModelForSeq2SeqLM",
    "base": "AutoModel",
}


def _default_head(transformers: ModuleType, config: object) -> str:
    """seq2seq_lm for encoder–decoder configs, masked_lm for encoder-only ones, else causal_lm."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq_lm"
    mappings = transformers.models.auto.modeling_auto
    masked = config.model_type in mappings.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    causal = config.model_type in mappings.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    return "masked_lm" if masked and (not causal or not getattr(config, "is_decoder", True)) else "causal_lm"


def _typed(options: dict[str, str]) -> dict[str, object]:
    """Turn option strings into None (``None``/``null``), ints, floats and booleans where they look like them."""
    typed: dict[str, object] = {}
    for key, value in options.items():
        lowered = value.lower()
        if lowered in ("none", "null"):
            typed[key] = None
            continue
        if lowered in ("true", "false"):
            typed[key] = lowered == "true"
            continue
        for kind in (int, float):
            try:
                typed[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            typed[key] = value
    return typed


def _load_factory(target: str, attribute: str) -> Callable:
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise SpecError(f"model file `{target}` does not exist; check the path in `{target}:{attribute}`")
        module_name = f"bitplan_user_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as error:
            raise SpecError(f"importing `{target}` raised {type(error).__name__}: {error}; fix the file") from error
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as error:
            raise SpecError(
                f"cannot import module `{target}` ({error}); check the spelling and that it is on PYTHONPATH"
            ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        names = [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]
        close = difflib.get_close_matches(attribute, names, n=3)
        hint = f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
        raise SpecError(f"`{target}` has no callable `{attribute}`.{hint}")
    return factory


def _call_factory(spec: str, factory: Callable, options: dict[str, str]) -> tuple[nn.Module, tuple | None]:
    from torch import nn

    try:
        made = factory(**_typed(options))
    except Exception as error:
        raise SpecError(f"the factory `{spec}` raised {type(error).__name__}: {error}; fix the factory") from error
    if isinstance(made, nn.Module):
        return made, None
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
        inputs = made[1] if isinstance(made[1], tuple) else (made[1],)
        return made[0], inputs
    raise SpecError(
        f"the factory `{spec}` returned {type(made).__name__}; it must return an nn.Module or "
        "(module, example_inputs)"
    )


def parse_input_shape(text: str, device: torch.device | str | None = None) -> tuple[torch.Tensor, ...]:
    """``'1x3x32x32'`` or ``'1x128:int64'`` (several joined by ``,``) → zero tensors of those shapes.

    Raises:
        SpecError: when a shape or dtype cannot be read.
    """
    import torch

    return tuple(
        torch.zeros(shape, dtype=getattr(torch, dtype), device=device) for shape, dtype in parse_shapes(text)
    )


def parse_shapes(text: str) -> list[tuple[list[int], str]]:
    """``'1x3x32x32,1x128:int64'`` → ``[([1, 3, 32, 32], 'float32'), ([1, 128], 'int64')]``, without torch.

    Raises:
        SpecError: when a shape or dtype cannot be read.
    """
    shapes = []
    for part in text.split(","):
        shape_text, _, dtype_text = part.strip().partition(":")
        try:
            shape = [int(dim) for dim in shape_text.lower().split("x")]
        except ValueError:
            raise SpecError(
                f"input shape `{part}` is not dimensions joined by `x`; write e.g. `1x3x32x32` or `1x128:int64`"
            ) from None
        if any(dim < 1 for dim in shape):
            raise SpecError(f"input shape `{part}` has a dimension below 1; every dimension must be positive")
        dtype = _DTYPES.get(dtype_text or "float32")
        if dtype is None:
            raise SpecError(f"unknown dtype `{dtype_text}` in `{part}`; use one of {', '.join(sorted(_DTYPES))}")
        shapes.append((shape, dtype))
    return shapes


def _with_batch(inputs: tuple, batch: int) -> tuple:
    import torch

    if batch < 1:
        raise SpecError(f"`--batch {batch}` must be at least 1")
    return tuple(
        t.new_zeros((batch, *t.shape[1:])) if isinstance(t, torch.Tensor) and t.dim() > 0 else t for t in inputs
    )


def load_model(
    spec: str,
    *,
    input_shape: str | None = None,
    batch: int | None = None,
    options: dict[str, str] | None = None,
    device: torch.device | str | None = None,
) -> LoadedModel:
    """Resolve a model spec to a module and its example inputs.

    Args:
        spec: ``zoo:NAME[?k=v&...]``, ``path/to/file.py:factory``, ``package.module:factory``,
            ``torchvision:NAME`` or ``hf:MODEL_TYPE``.
        input_shape: override the example inputs, e.g. ``'1x3x32x32'`` or ``'1x128:int64'``.
        batch: replace the leading dimension of every example input.
        options: extra options merged into the spec's query (e.g. ``num_classes`` from a dataset).
        device: build the model under this default device (``'meta'`` allocates nothing).

    Returns:
        A ``LoadedModel(model, example_inputs, spec)``.

    Raises:
        SpecError: unknown spec or zoo name, missing file, factory that raises, bad option.

    Example:
        >>> loaded = load_model("zoo:resnet20", batch=2)  # doctest: +SKIP
        >>> loaded.example_inputs[0].shape  # doctest: +SKIP
        torch.Size([2, 3, 32, 32])
    """
    base, query = split_spec(spec)
    merged = {**query, **(options or {})}
    if base.endswith(".onnx"):
        raise SpecError(
            f"`{spec}` is an ONNX file: it can be profiled (`bitplan profile {spec}`) but not loaded as a "
            "PyTorch module; pass a PyTorch spec such as `zoo:NAME` or `file.py:factory`"
        )
    import torch

    prefix, _, rest = base.partition(":")
    override = parse_input_shape(input_shape, "meta") if input_shape else None
    if prefix == "zoo" and override:
        merged = {**_sized_to(rest, override[0]), **merged}
    context = torch.device(device) if device is not None else nullcontext()
    skip_init = _skip_meta_init() if device is not None and torch.device(device).type == "meta" else nullcontext()
    with context, skip_init:
        if prefix in _RESOLVERS and rest:
            model, inputs = _RESOLVERS[prefix](rest, merged)
        elif rest and (prefix.endswith(".py") or prefix.replace(".", "").replace("_", "").isalnum()):
            model, inputs = _call_factory(spec, _load_factory(prefix, rest), merged)
        else:
            raise SpecError(_unknown_spec_message(spec))
        if input_shape:
            inputs = parse_input_shape(input_shape)
    if inputs is None:
        raise SpecError(
            f"the factory `{spec}` returned only a module, so bitplan does not know its input; "
            "pass `--input-shape` (e.g. `1x3x32x32`, or `1x128:int64` for token ids) or return (module, inputs)"
        )
    if batch is not None:
        inputs = _with_batch(inputs, batch)
    return LoadedModel(model, tuple(inputs), spec)


def _skip_meta_init():
    """A torch-function mode for building on meta: it skips in-place initialisers, which compute
    nothing there, and makes factory and elementwise results from their shapes alone
    (``bitplan.frontends.shapes``): their meta kernels load torch's compiler stack (seconds)."""
    import torch
    from torch.overrides import TorchFunctionMode

    from bitplan.frontends.shapes import call_on_meta
    from bitplan.frontends.torch_calls import op_name_of

    class SkipMetaInit(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = op_name_of(func)
            if name in _INITIALISERS:
                # ``nn.init`` functions reach the mode with the tensor as a keyword argument
                target = args[0] if args else kwargs.get("tensor")
                if isinstance(target, torch.Tensor) and target.device.type == "meta":
                    return target
            return call_on_meta(name, func, args, kwargs)  # factories and tables (RoPE) without meta kernels

    return SkipMetaInit()


_INITIALISERS = frozenset(
    {
        "normal_", "uniform_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
        "xavier_normal_", "orthogonal_", "zeros_", "ones_", "constant_", "fill_", "zero_", "copy_",
    }
)


def _sized_to(name: str, example: torch.Tensor) -> dict[str, str]:
    """Zoo options that make the model accept ``example``: token ids set ``seq_len``; a square image
    sets ``in_channels`` and ``input_size`` (the linear head of e.g. alexnet_cifar depends on it)."""
    try:
        from bitplan.zoo.registry import entry as zoo_entry

        accepted = zoo_entry(name).config_type.model_fields
    except Exception:  # an unknown zoo name is reported by the zoo itself, with suggestions
        return {}
    if not example.is_floating_point() and example.dim() == 2:
        wanted = {"seq_len": example.shape[1]}
    elif example.dim() == 4 and example.shape[2] == example.shape[3]:
        wanted = {"in_channels": example.shape[1], "input_size": example.shape[2]}
    else:
        wanted = {}
    return {key: str(value) for key, value in wanted.items() if key in accepted}


def _unknown_spec_message(spec: str) -> str:
    message = (
        f"cannot resolve model spec `{spec}`: use `zoo:NAME`, `path/to/file.py:factory`, "
        "`package.module:factory`, `torchvision:NAME`, `hf:MODEL_TYPE` or a `.onnx` file"
    )
    from bitplan import zoo

    close = difflib.get_close_matches(spec.split("?")[0].split(":")[-1], zoo.names(), n=3)
    if close:
        message += f". Did you mean {', '.join(f'`zoo:{name}`' for name in close)}?"
    return message


def _data_inputs(data: str, example_inputs: tuple, batch: int) -> tuple:
    """The first ``batch`` test samples of a data spec, stacked like the example input."""
    import torch

    from bitplan.data import load_data

    bundle = load_data(data, example_inputs=example_inputs)
    samples = [bundle.test[i][0] for i in range(min(batch, len(bundle.test)))]
    return (torch.stack(samples),)


def profile_spec(
    spec: str,
    *,
    input_shape: str | None = None,
    batch: int | None = None,
    tracer: TracerChoice | str = TracerChoice.auto,
    allow_partial: bool = False,
    routing: RoutingChoice | str = RoutingChoice.uniform,
    data: str | None = None,
) -> ModelProfile:
    """Profile the model a spec names. Zoo, torchvision and hf models are built on the meta device
    (on the CPU, with a note in the profile, when their code needs real values while it is built, or
    when tracing needs values: ``nonzero``, ``.item()``, detection models; then it is traced on real
    tensors, batch as given).

    Args:
        routing: ``measured`` builds the model on the CPU and counts the tokens its routers really send
            (docs/concepts.md, "Mixture of experts"); the weights are the spec's own.
        data: a data spec (docs/data.md) whose first test samples (``batch`` of them, default 1) are the
            input instead of the spec's example input.

    Raises:
        SpecError, TraceError, OnnxError, DataError: see ``load_model``, ``load_data`` and the front ends' ``trace``.
    """
    base, _ = split_spec(spec)
    if base.endswith(".onnx"):
        from bitplan.frontends.onnx import trace as trace_onnx

        shapes = [shape for shape, _ in parse_shapes(input_shape)] if input_shape else None
        return trace_onnx(base, input_shapes=shapes, batch=batch, name=spec)
    from bitplan.frontends.torch import trace as trace_torch

    notes = []
    measured = RoutingChoice(routing) is RoutingChoice.measured
    if measured or data:
        loaded = load_model(spec, input_shape=input_shape, batch=batch)
        inputs = _data_inputs(data, loaded.example_inputs, batch or 1) if data else loaded.example_inputs
        profile = trace_torch(loaded.model, inputs, name=spec, tracer=tracer, allow_partial=allow_partial, routing=routing)
        return profile.model_copy(update={"notes": [*profile.notes, f"input: the first {batch or 1} test sample(s) of `{data}`"]}) if data else profile
    builds_on_meta = base.split(":")[0] in ("zoo", "torchvision", "hf")
    try:
        loaded = load_model(spec, input_shape=input_shape, batch=batch, device="meta" if builds_on_meta else None)
    except SpecError:
        raise
    except Exception as error:  # model code that needs real values while it is built (regnet's `.tolist()`)
        if not builds_on_meta:
            raise
        loaded = load_model(spec, input_shape=input_shape, batch=batch)
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        notes.append(
            f"built on the CPU with random weights (building on the meta device failed: {type(error).__name__}: "
            f"{reason}); traced on meta tensors as usual"
        )
    on_meta = builds_on_meta and not notes
    try:
        profile = trace_torch(loaded.model, loaded.example_inputs, name=spec, tracer=tracer, allow_partial=allow_partial and not on_meta)
    except TraceError as error:
        if not on_meta or TracerChoice(tracer) is TracerChoice.export:
            raise
        # the tracers need values the meta device does not have: random weights on the CPU, traced once
        loaded = load_model(spec, input_shape=input_shape, batch=batch)
        reason = str(error).split(". ", 1)[-1][:200]
        notes.append(f"built on the CPU with random weights, because tracing on meta tensors failed ({reason})")
        profile = trace_torch(loaded.model, loaded.example_inputs, name=spec, tracer=tracer, values=True, allow_partial=allow_partial)
    return profile.model_copy(update={"notes": [*notes, *profile.notes]}) if notes else profile
