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
