"""Check torchvision models against torch's FLOP counter: `bitplan profile torchvision:NAME` vs FlopCounterMode.

    python scripts/torchvision_exact.py r3d_18 raft_small swin_v2_t          # JSON lines on stdout
    python scripts/torchvision_exact.py --without-compiled-ops fcos_resnet50_fpn

Each line gives bitplan's MACs and the FLOP counter's (FLOPs / 2) at the input bitplan chose, the invariant
(GEMM weight params <= model params) and the profile's notes. Static models are counted on the meta device;
models that need values (detection) are profiled on real tensors, so both sides build them from seed 0.

`--without-compiled-ops` is for a torchvision whose compiled ops do not load next to this torch (a CUDA
wheel beside CPU torch): it imports the pure-Python model builders without registering the compiled ops'
meta kernels, replaces `nms` by a Python loop and disables torch.compile (torchvision's Python `roi_align`
is compiled). Only this script does that; `bitplan` itself refuses such a torchvision with one SpecError.
"""

from __future__ import annotations

import json
import os
import sys
import types


def import_without_compiled_ops() -> None:
    """Import torchvision's Python code when its compiled ops cannot load (never done by bitplan itself)."""
    os.environ["TORCHDYNAMO_DISABLE"] = "1"
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    import torch
    from torchvision.ops import boxes, roi_align

    def nms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        order = scores.argsort(descending=True)
        overlap = boxes.box_iou(dets[order], dets[order])  # [N, N]
        keep, dropped = [], torch.zeros(len(order), dtype=torch.bool)
        for i in range(len(order)):
            if not dropped[i]:
                keep.append(i)
                dropped |= overlap[i] > iou_threshold
        return order[torch.tensor(keep, dtype=torch.long)]

    boxes.nms = nms
    boxes._assert_has_ops = roi_align._assert_has_ops = lambda: None


def check(name: str) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bitplan.spec import load_model, profile_spec

    torch.manual_seed(0)
    profile = profile_spec(f"torchvision:{name}")
    on_values = any("real tensors" in note for note in profile.notes)
    torch.manual_seed(0)
    loaded = load_model(f"torchvision:{name}", device=None if on_values else "meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        loaded.model.eval()(*loaded.example_inputs)
    reference = counter.get_total_flops() // 2
    return {
        "model": name, "input": profile.input_shapes, "bitplan_macs": profile.total_macs, "flop_counter_macs": reference,
        "equal": profile.total_macs == reference, "gemm_params": profile.gemm_params, "total_params": profile.total_params,
        "invariant": profile.gemm_params <= profile.total_params, "layers": len(profile.layers), "notes": profile.notes,
    }


def main(argv: list[str]) -> int:
    names = [arg for arg in argv if not arg.startswith("--")]
    if "--without-compiled-ops" in argv:
        import_without_compiled_ops()
    exact = True
    for name in names:
        result = check(name)
        print(json.dumps(result), flush=True)  # one line per model, as soon as it is known
        exact = exact and result["equal"] and result["invariant"]
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
