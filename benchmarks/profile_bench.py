"""Profile cost against FLOP counters: wall time and peak RSS, each run in a fresh process.

Compares ``bitplan profile`` (meta tensors) with ``torch.utils.flop_counter.FlopCounterMode`` on
real tensors (and fvcore / torchinfo when installed) on resnet50, mobilenet_v2, a GPT-2-small-shaped
transformer_lm and the Llama-2-7B shape on meta. Variants alternate run by run, so the machine's
drift hits all of them alike; the median of ``--repeats`` runs is reported. Also counts the GEMMs a
module-hook counter sees, to show what hook-based tools miss (functional matmuls, attention).

    python benchmarks/profile_bench.py [--repeats 3] [--out benchmarks/results/profile.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = {
    "resnet50": "zoo:resnet50",
    "mobilenet_v2": "zoo:mobilenet_v2",
    "gpt2_small": "zoo:transformer_lm?preset=gpt2",
    "llama2_7b_meta": "zoo:transformer_lm?preset=llama2-7b",
}

BITPLAN = """
from bitplan.spec import profile_spec
profile = profile_spec({spec!r})
print(RESULT, len(profile.layers), profile.total_macs)
"""

FLOP_COUNTER = """
import torch
from torch.utils.flop_counter import FlopCounterMode
from bitplan.spec import load_model
device = "meta" if {meta!r} else None
loaded = load_model({spec!r}, device=device)
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    loaded.model.eval()(*loaded.example_inputs)
print(RESULT, -1, counter.get_total_flops() // 2)
"""

HOOKS = """
import torch
from torch import nn
from bitplan.spec import load_model
loaded = load_model({spec!r}, device="meta")
seen = []
for module in loaded.model.modules():
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LSTM, nn.GRU)):
        module.register_forward_hook(lambda m, i, o: seen.append(m))
with torch.no_grad():
    loaded.model.eval()(*loaded.example_inputs)
print(RESULT, len(seen), -1)
"""

FVCORE = """
import torch
from fvcore.nn import FlopCountAnalysis
from bitplan.spec import load_model
loaded = load_model({spec!r})
print(RESULT, -1, FlopCountAnalysis(loaded.model.eval(), loaded.example_inputs).total())
"""


def run_fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter; return wall seconds, peak RSS (MB) and what it printed."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", "RESULT = 'RESULT'\n" + code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    stdout, stderr = process.stdout.read(), process.stderr.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    line = next((l for l in stdout.splitlines() if l.startswith("RESULT")), None)
    if process.returncode != 0 or line is None:
        last = (stderr.strip().splitlines() or ["?"])[-1]
        return {"ok": False, "seconds": seconds, "rss_mb": usage.ru_maxrss / 1024, "error": last[:200]}
    _, gemms, macs = line.split()
    return {"ok": True, "seconds": seconds, "rss_mb": usage.ru_maxrss / 1024, "gemms": int(gemms), "macs": int(macs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/profile.json"))
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    try:
        import fvcore  # noqa: F401

        has_fvcore = True
    except ImportError:
        has_fvcore = False
    report = {}
    for key in args.models.split(","):
        spec = MODELS[key]
        meta = key.endswith("_meta")
        variants = {
            "bitplan": BITPLAN.format(spec=spec),
            "flop_counter": FLOP_COUNTER.format(spec=spec, meta=meta),
        }
        if has_fvcore and not meta:
            variants["fvcore"] = FVCORE.format(spec=spec)
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, code in variants.items():  # interleaved: drift hits every variant alike
                runs[name].append(run_fresh(code))
        hooks = run_fresh(HOOKS.format(spec=spec))
        summary = {}
        for name, results in runs.items():
            good = [r for r in results if r["ok"]]
            summary[name] = {
                "ok": bool(good),
                "seconds": statistics.median(r["seconds"] for r in good) if good else None,
                "rss_mb": max(r["rss_mb"] for r in good) if good else None,
                "gemms": good[0].get("gemms") if good else None,
                "macs": good[0].get("macs") if good else None,
                "error": None if good else results[0].get("error"),
            }
        base = summary["flop_counter"]
        ours = summary["bitplan"]
        ratio = ours["seconds"] / base["seconds"] if base["ok"] and ours["ok"] else None
        report[key] = {"spec": spec, **summary, "hook_counter_gemms": hooks.get("gemms"), "time_ratio_vs_flop_counter": ratio}
        base_text = f"{base['seconds']:.2f}s {base['rss_mb']:.0f}MB" if base["ok"] else f"FAILED ({base['error']})"
        print(
            f"{key:16s} bitplan {ours['seconds']:.2f}s {ours['rss_mb']:.0f}MB {ours['gemms']} GEMMs | "
            f"FlopCounterMode {base_text} | ratio {ratio if ratio is None else round(ratio, 2)} | "
            f"MACs bitplan {ours['macs']:,} vs counter {base['macs'] if base['ok'] else '-'} | "
            f"module hooks see {hooks.get('gemms')} GEMMs"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
