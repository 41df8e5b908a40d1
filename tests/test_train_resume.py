"""Kill a training process mid-epoch (SIGKILL), resume it, and get the uninterrupted run's results."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from bitplan.train import TrainConfig, train_seeds

TINY_FACTORY = '''
import torch
from torch import nn


def build(num_classes: int = 4, hidden: int = 16):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    return model, (torch.zeros(1, 3, 2, 2),)
'''
EPOCHS = 3
DATA = "synthetic?classes=4&n=4096&test_n=64"


def _command(spec: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "bitplan", "train", "--model", spec, "--data", DATA, "--factor", "A",
        "--strategy", "C-", "--epochs", str(EPOCHS), "--batch-size", "16", "--threads", "1",
        "--no-progress", "--out", str(out), *extra,
    ]


def _metrics_without_time(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in line.items() if key != "seconds"} for line in lines]


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    spec_file = tmp_path / "tiny_model.py"
    spec_file.write_text(TINY_FACTORY)
    spec = f"{spec_file}:build"
    killed = tmp_path / "killed"
    run = killed / "seed-0"

    process = subprocess.Popen(_command(spec, killed), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text().strip():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the first epoch never finished"
        time.sleep(0.05)
    time.sleep(0.2)  # inside epoch 2 (an epoch is 256 batches)
    process.kill()  # SIGKILL: no cleanup code runs
    process.wait()
    assert not (run / "final.json").exists(), "the run finished before it could be killed"
    done_before_kill = len(_metrics_without_time(run))
    assert 1 <= done_before_kill < EPOCHS
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == done_before_kill

    resumed = subprocess.run(_command(spec, killed, "--resume"), cwd=tmp_path, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()

    config = TrainConfig(
        model=spec, data=DATA, factor="A", strategy="C-", epochs=EPOCHS, batch_size=16, threads=1,
        out=tmp_path / "straight",
    )
    train_seeds(config, [0], progress=False)
    straight = tmp_path / "straight" / "seed-0"
    assert _metrics_without_time(run) == _metrics_without_time(straight)  # bitwise: floats compared exactly
    final_killed = json.loads((run / "final.json").read_text())
    final_straight = json.loads((straight / "final.json").read_text())
    for key in ("status", "metric", "train_loss", "test_loss", "epochs_done"):
        assert final_killed[key] == final_straight[key]
    weights_killed = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    weights_straight = torch.load(straight / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(weights_killed[key], weights_straight[key]) for key in weights_straight)
