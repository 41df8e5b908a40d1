"""Model specs resolve the same way everywhere, and bad specs say what to do."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from bitplan.errors import SpecError
from bitplan.spec import load_model, parse_input_shape, profile_spec, split_spec


def test_split_spec_reads_options() -> None:
    assert split_spec("zoo:mobilenet_v2?width=0.5&num_classes=10") == (
        "zoo:mobilenet_v2",
        {"width": "0.5", "num_classes": "10"},
    )


def test_input_shapes_and_dtypes() -> None:
    image, tokens = parse_input_shape("1x3x32x32,2x128:int64")
    assert image.shape == (1, 3, 32, 32) and image.dtype == torch.float32
    assert tokens.shape == (2, 128) and tokens.dtype == torch.int64
    with pytest.raises(SpecError, match="not dimensions joined by `x`"):
        parse_input_shape("1by3")
    with pytest.raises(SpecError, match="unknown dtype `int7`"):
        parse_input_shape("1x3:int7")


def test_file_factory_returning_module_needs_input_shape(tmp_path) -> None:
    source = tmp_path / "mine.py"
    source.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def plain():
                return nn.Linear(4, 2)

            def with_inputs(hidden=3):
                return nn.Sequential(nn.Linear(4, hidden), nn.Linear(hidden, 2)), torch.zeros(5, 4)

            def broken():
                raise RuntimeError("no weights here")
            """
        )
    )
    with pytest.raises(SpecError, match="pass `--input-shape`"):
        load_model(f"{source}:plain")
    loaded = load_model(f"{source}:plain", input_shape="6x4")
    assert loaded.example_inputs[0].shape == (6, 4)
    profile = profile_spec(f"{source}:with_inputs?hidden=7", batch=2)
    assert [(l.m, l.k, l.n) for l in profile.layers] == [(2, 4, 7), (2, 7, 2)]
    with pytest.raises(SpecError, match="raised RuntimeError: no weights here"):
        load_model(f"{source}:broken")
    with pytest.raises(SpecError, match="has no callable `plan`. Did you mean `plain`"):
        load_model(f"{source}:plan")
    with pytest.raises(SpecError, match="does not exist"):
        load_model(f"{tmp_path}/missing.py:plain")


def test_module_factory(tmp_path, monkeypatch) -> None:
    (tmp_path / "pkg_models.py").write_text("from torch import nn\nimport torch\ndef tiny():\n    return nn.Linear(3, 3), torch.zeros(1, 3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert profile_spec("pkg_models:tiny").layers[0].k == 3
    with pytest.raises(SpecError, match="cannot import module `no_such_pkg.models`"):
        load_model("no_such_pkg.models:tiny")


def test_unknown_spec_suggests_zoo_names() -> None:
    with pytest.raises(SpecError, match="Did you mean `zoo:resnet20`"):
        load_model("resnet20")
    with pytest.raises(SpecError, match="ONNX file"):
        load_model("model.onnx")


def test_options_override_zoo_defaults() -> None:
    loaded = load_model("zoo:resnet20", options={"num_classes": "7"}, batch=4)
    assert loaded.model(torch.zeros(4, 3, 32, 32)).shape == (4, 7)


def test_input_shape_resizes_zoo_models() -> None:
    profile = profile_spec("zoo:transformer_lm", input_shape="2x256:int64")
    assert profile.layers[0].m == 2 * 256
    # alexnet_cifar's first linear layer depends on the image size: 64×64 gives K = 256·4·4
    fc1 = next(l for l in profile_spec("zoo:alexnet_cifar", input_shape="1x3x64x64").layers if l.name == "fc1")
    assert fc1.k == 4096


@pytest.fixture
def fake_torchvision(tmp_path, monkeypatch):
    """Install a package named torchvision with the given source (the real one is absent or broken here)."""

    def install(body: str) -> None:
        package = tmp_path / "torchvision"
        package.mkdir()
        (package / "__init__.py").write_text(textwrap.dedent(body))
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop("torchvision", None)

    saved = sys.modules.get("torchvision")
    yield install
    sys.modules.pop("torchvision", None)
    if saved is not None:
        sys.modules["torchvision"] = saved


def test_a_torchvision_built_for_another_torch_is_one_clear_error(fake_torchvision) -> None:
    from typer.testing import CliRunner

    from bitplan.cli.app import app

    fake_torchvision('raise RuntimeError("operator torchvision::nms does not exist")\n')
    with pytest.raises(SpecError, match=r"does not match torch .*RuntimeError: operator torchvision::nms does not exist"):
        load_model("torchvision:resnet18")
    result = CliRunner().invoke(app, ["profile", "torchvision:resnet18"])
    assert result.exit_code == 2 and "does not match torch" in result.output and "Traceback" not in result.output


BUILDERS = """
    import functools
    import types

    import torch
    from torch import nn

    calls = []

    class models:
        @staticmethod
        def get_model_builder(name):
            def segmenter(*, weights, weights_backbone="DEFAULT", aux_loss=True, num_classes=21):
                calls.append(dict(weights=weights, weights_backbone=weights_backbone, aux_loss=aux_loss))
                return nn.Conv2d(3, num_classes, 1)

            def regnet(*, weights):
                torch.zeros(3).tolist()  # needs real values while building: fails on meta
                return nn.Conv2d(3, 4, 3)

            return {"fcn": segmenter, "regnet": regnet, "inception_v3": regnet, "quantized_googlenet": segmenter}[name]

        @staticmethod
        def get_model_weights(name):
            if name == "regnet":
                raise ValueError("no weights")
            transforms = {
                "fcn": functools.partial(print, resize_size=520),
                "inception_v3": functools.partial(print, crop_size=299, resize_size=342),
                "quantized_googlenet": functools.partial(print, crop_size=[200], resize_size=256),
            }[name]
            return [types.SimpleNamespace(transforms=transforms)]
"""


def test_torchvision_specs_never_download_and_none_means_none(fake_torchvision) -> None:
    fake_torchvision(BUILDERS)
    import torchvision

    load_model("torchvision:fcn")
    load_model("torchvision:fcn?aux_loss=None&num_classes=3")
    assert torchvision.calls == [
        {"weights": None, "weights_backbone": None, "aux_loss": True},
        {"weights": None, "weights_backbone": None, "aux_loss": None},
    ]


def test_torchvision_input_sizes_follow_the_weights_metadata(fake_torchvision) -> None:
    fake_torchvision(BUILDERS)
    sizes = {name: load_model(f"torchvision:{name}").example_inputs[0].shape[-1] for name in
             ("fcn", "inception_v3", "quantized_googlenet", "regnet")}
    assert sizes == {"fcn": 520, "inception_v3": 299, "quantized_googlenet": 200, "regnet": 224}


def test_a_model_that_cannot_be_built_on_meta_is_built_on_cpu_with_a_note(fake_torchvision) -> None:
    fake_torchvision(BUILDERS)
    profile = profile_spec("torchvision:regnet")
    assert [(layer.m, layer.k, layer.n) for layer in profile.layers] == [(222 * 222, 27, 4)]
    assert len(profile.notes) == 1 and profile.notes[0].startswith("built on the CPU")


HF_TINY = "hidden_size=32&num_hidden_layers=1&num_attention_heads=2&intermediate_size=64&vocab_size=100&seq_len=8"


def test_hf_encoder_only_and_encoder_decoder_get_their_auto_class() -> None:
    pytest.importorskip("transformers")
    bert = load_model(f"hf:bert?{HF_TINY}", device="meta").model
    assert type(bert).__name__ == "BertForMaskedLM"
    profile = profile_spec(f"hf:bert?{HF_TINY}")
    first = next(layer for layer in profile.layers if not layer.op.lookup)
    assert (first.name, first.m, first.k) == ("bert.encoder.layer.0.attention.self.query", 8, 32)
    # word (tied to the decoder), token-type and position tables: three lookups, 8 ids each
    assert [(layer.name.rpartition(".")[2], layer.m, layer.k, layer.shared) for layer in profile.lookups] == [
        ("word_embeddings", 8, 100, True), ("token_type_embeddings", 8, 2, False), ("position_embeddings", 8, 512, False)
    ]
    t5 = "hf:t5?d_model=32&d_kv=8&d_ff=64&num_layers=1&num_decoder_layers=1&num_heads=4&vocab_size=100&seq_len=8"
    loaded = load_model(t5, device="meta")
    assert type(loaded.model).__name__ == "T5ForConditionalGeneration"
    names = [layer.name for layer in profile_spec(t5).layers]
    assert "decoder.block.0.layer.1.EncDecAttention.q" in names and names[-1] == "lm_head"
    assert type(load_model(f"hf:bert?{HF_TINY}&head=base", device="meta").model).__name__ == "BertModel"
    with pytest.raises(SpecError, match="`head=classifier` is not one of causal_lm"):
        load_model(f"hf:bert?{HF_TINY}&head=classifier", device="meta")


FAMILIES = """
    import functools
    import types

    import torch
    from torch import nn

    class Clip(nn.Module):  # a video model: conv3d over [B, 3, T, H, W]
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv3d(3, 4, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3))

        def forward(self, video):
            return self.stem(video)

    class Flow(nn.Module):  # optical flow: two images
        def __init__(self):
            super().__init__()
            self.encoder = nn.Conv2d(3, 4, 8, stride=8)

        def forward(self, image1, image2):
            return self.encoder(image1) - self.encoder(image2)

    class Patches(nn.Module):  # a model constructed for one image size (ViT's image_size)
        def __init__(self, image_size=224):
            super().__init__()
            self.image_size = image_size
            self.proj = nn.Conv2d(3, 4, 14, stride=14)

        def forward(self, image):
            assert image.shape[-1] == self.image_size
            return self.proj(image)

    class Detector(nn.Module):  # proposals whose count depends on values (nonzero): meta cannot trace it
        def __init__(self):
            super().__init__()
            self.backbone = nn.Conv2d(3, 4, 3, padding=1)
            self.box_head = nn.Linear(4, 6)

        def forward(self, image):
            features = self.backbone(image).flatten(2).transpose(1, 2).reshape(-1, 4)
            keep = torch.nonzero(features.sum(1) > -1e9).squeeze(1)  # every position, found from values
            return self.box_head(features[keep])

    def builder(model, module):
        def build(*, weights):
            return model()
        build.__module__ = module
        return build

    def weights(**settings):
        meta = settings.pop("meta", {})
        return [types.SimpleNamespace(transforms=functools.partial(print, **settings), meta=meta)]

    class models:
        @staticmethod
        def get_model_builder(name):
            return {
                "r3d": builder(Clip, "torchvision.models.video.resnet"),
                "s3d": builder(Clip, "torchvision.models.video.s3d"),
                "raft": builder(Flow, "torchvision.models.optical_flow.raft"),
                "vit": builder(Patches, "torchvision.models.vision_transformer"),
                "detector": builder(Detector, "torchvision.models.detection.faster_rcnn"),
            }[name]

        @staticmethod
        def get_model_weights(name):
            return {
                "r3d": weights(crop_size=(112, 112), resize_size=(128, 171), meta={"min_size": (1, 1)}),
                "s3d": weights(crop_size=(224, 224), meta={"min_temporal_size": 20}),
                "raft": weights(meta={"min_size": (128, 128)}),
                "vit": weights(crop_size=518, resize_size=518),  # the weights' size, not the model's
                "detector": weights(meta={}),
            }[name]
"""


def test_torchvision_default_inputs_come_from_the_model_family(fake_torchvision) -> None:
    fake_torchvision(FAMILIES)
    shapes = {name: [tuple(t.shape) for t in load_model(f"torchvision:{name}").example_inputs] for name in ("r3d", "s3d", "raft", "vit")}
    assert shapes == {
        "r3d": [(1, 3, 16, 112, 112)],  # a 16-frame clip at the weights' crop
        "s3d": [(1, 3, 20, 224, 224)],  # the weights need at least 20 frames
        "raft": [(1, 3, 224, 224), (1, 3, 224, 224)],  # two images
        "vit": [(1, 3, 224, 224)],  # built without weights: its own image_size
    }
    profile = profile_spec("torchvision:r3d")
    assert [(layer.m, layer.k, layer.n) for layer in profile.layers] == [(16 * 56 * 56, 3 * 3 * 7 * 7, 4)]
    assert profile.input_shapes == [[1, 3, 16, 112, 112]]


def test_a_model_that_needs_values_is_rebuilt_on_the_cpu_and_traced_on_real_tensors(fake_torchvision) -> None:
    fake_torchvision(FAMILIES)
    profile = profile_spec("torchvision:detector", tracer="record")
    assert [(layer.name, layer.m) for layer in profile.layers] == [("backbone", 224 * 224), ("box_head", 224 * 224)]
    assert len(profile.notes) == 2
    assert profile.notes[0].startswith("built on the CPU") and "`nonzero`" in profile.notes[0]
    assert "real tensors" in profile.notes[1]
