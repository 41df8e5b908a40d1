"""torchvision architectures have no silent drops (skipped where torchvision cannot be imported)."""

from __future__ import annotations

import pytest

from bitplan.errors import SpecError
from bitplan.profile.schema import UncoveredKind
from bitplan.spec import import_torchvision, profile_spec

try:
    import_torchvision("resnet18")
    TORCHVISION_PROBLEM = None
except SpecError as error:  # not installed, or built for another torch: the message says which
    TORCHVISION_PROBLEM = str(error)

# A representative of each family: plain CNNs, depthwise, attention with class token and positions,
# windowed attention with a bias table, a segmentation model with a backbone, aux heads, RegNet (built on CPU).
MODELS = [
    "resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "vit_b_16", "swin_t",
    "fcn_resnet50", "googlenet", "regnet_y_400mf",
]


@pytest.mark.skipif(TORCHVISION_PROBLEM is not None, reason=f"torchvision unusable here: {TORCHVISION_PROBLEM}")
@pytest.mark.parametrize("name", MODELS)
def test_torchvision_models_have_no_unsupported_weights(name: str) -> None:
    profile = profile_spec(f"torchvision:{name}")
    kinds = {entry.parameter: entry.kind for entry in profile.uncovered}
    assert UncoveredKind.unsupported not in kinds.values(), kinds
    unused = [parameter for parameter, kind in kinds.items() if kind is UncoveredKind.unused]
    assert all(parameter.startswith(("aux1.", "aux2.", "aux_classifier.")) for parameter in unused), unused
    assert profile.coverage.gemm_params + profile.coverage.uncovered_params == profile.coverage.matrix_params
    assert profile.gemm_params <= profile.total_params


# The models issue 18 named: video (clip inputs from the builder), RAFT (two images, a loop whose first
# iteration runs on constants), ViT-H/14 (its own image_size without weights), swin_v2 (cpb_mlp on a table).
EXACT = ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "vit_h_14", "raft_small", "swin_v2_t"]


@pytest.mark.slow
@pytest.mark.skipif(TORCHVISION_PROBLEM is not None, reason=f"torchvision unusable here: {TORCHVISION_PROBLEM}")
@pytest.mark.parametrize("name", EXACT)
def test_torchvision_models_equal_the_flop_counter_at_their_default_input(name: str) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bitplan.spec import load_model

    profile = profile_spec(f"torchvision:{name}")
    loaded = load_model(f"torchvision:{name}", device="meta")  # FLOPs need shapes only
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        loaded.model.eval()(*loaded.example_inputs)
    assert profile.total_macs == counter.get_total_flops() // 2
    assert profile.gemm_params <= profile.total_params
    if name == "raft_small":
        assert len(loaded.example_inputs) == 2
        assert sum(layer.name.split("#")[0] == "update_block.motion_encoder.convflow1.0" for layer in profile.layers) == 12
    if name == "swin_v2_t":
        assert sum(layer.macs for layer in profile.layers if ".cpb_mlp." in layer.name) > 0
    if name == "vit_h_14":
        assert profile.input_shapes == [[1, 3, 224, 224]]
