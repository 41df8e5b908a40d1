"""Profiling an ONNX file with embedded weights does not load the weights (docs/onnx.md, "Memory")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

SIZE = 2560  # four [2560, 2560] float32 weights: a 105 MB file


def write_big_model(path: Path) -> int:
    weights = [
        helper.make_tensor(f"w{i}", TensorProto.FLOAT, [SIZE, SIZE], bytes(4 * SIZE * SIZE), raw=True) for i in range(4)
    ]
    nodes = [helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", f"w{i}"], [f"h{i + 1}"]) for i in range(4)]
    graph = helper.make_graph(
        nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, SIZE])],
        [helper.make_tensor_value_info("h4", TensorProto.FLOAT, None)], initializer=weights,
    )
    onnx.save(helper.make_model(graph), path)
    return path.stat().st_size


# Peak resident memory of the profiling call alone. ru_maxrss would include the memory of the pytest
# process the child was forked from, so the child resets its high-water mark (Linux clear_refs) after
# its imports and reads VmHWM afterwards.
MEASURE = """
import re, sys
from bitplan.frontends.onnx import trace

def status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read())[1]) * 1024

open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
profile = trace(sys.argv[1])
print(status("VmHWM") - before, len(profile.layers), profile.total_params)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak memory")
def test_peak_memory_stays_far_below_the_file_size(tmp_path: Path) -> None:
    path = tmp_path / "big.onnx"
    size = write_big_model(path)
    assert size > 100_000_000
    run = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, check=True)
    peak, layers, params = (int(value) for value in run.stdout.split())
    assert (layers, params) == (4, 4 * SIZE * SIZE)
    assert peak <= size + 300_000_000  # the promise in docs/onnx.md
    assert peak < size // 2  # in fact no copy of the weights is ever resident
