"""What people read: whole names on a pipe, profiles grouped by module prefix, the largest GEMMs, plan plots.

The resnet20 aggregates are derived by hand from the architecture (CIFAR ResNet-20, 32×32 input,
batch 1): a 3×3 conv with C_in inputs and C_out outputs at an H×W output is a GEMM with
K = 9·C_in, M = H·W, N = C_out, params K·N and MACs M·K·N.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.errors import SpecError
from bitplan.plan.synthetic import resnet20_profile
from bitplan.profile.summary import group_by_prefix, index_ranges, largest, prefix_of, summarize

# layer1: six convs 16→16 at 32×32: K = 144, M = 1024, params 2,304, MACs 1024·144·16 = 2,359,296 each.
LAYER1 = dict(count=6, params=6 * 2304, macs=6 * 2_359_296, k_range=(144, 144), m_range=(1024, 1024))
# layer2: one conv 16→32 (stride 2) at 16×16: K = 144, params 4,608, MACs 256·144·32 = 1,179,648; then five
# convs 32→32 at 16×16: K = 288, params 9,216, MACs 256·288·32 = 2,359,296 each.
LAYER2 = dict(count=6, params=4608 + 5 * 9216, macs=1_179_648 + 5 * 2_359_296, k_range=(144, 288), m_range=(256, 256))


def test_piped_profile_prints_every_name_whole():
    environment = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "bitplan", "profile", "zoo:transformer_lm"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=environment, text=True, timeout=120, check=True)
    for name in ("blocks.0.attn.q_proj", "blocks.0.attn.k_proj", "blocks.0.attn.v_proj",
                 "blocks.1.attn.attention_qk", "blocks.1.mlp.down_proj", "lm_head"):
        assert name in done.stdout, f"{name} is cut in piped output"
    assert "…" not in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) > 80  # the pipe is not held to COLUMNS


def test_prefixes_and_index_ranges():
    assert [prefix_of("layer1.0.conv1", depth) for depth in (1, 2, 3, 4)] == [
        "layer1", "layer1.0", "layer1.0.conv1", "layer1.0.conv1"]
    assert index_ranges((0, 1, 2, 5, 7, 8)) == "0-2, 5, 7-8"


def test_depth_one_groups_resnet20_stages():
    groups = group_by_prefix(resnet20_profile(), 1)
    assert [(group.prefix, group.indices) for group in groups] == [
        ("conv1", (0,)), ("layer1", tuple(range(1, 7))), ("layer2", tuple(range(7, 13))),
        ("layer3", tuple(range(13, 19))), ("fc", (19,))]
    for group, expected in ((groups[1], LAYER1), (groups[2], LAYER2)):
        assert (group.count, group.params, group.macs, group.k_range, group.m_range) == tuple(expected.values())


def test_a_weight_shared_inside_a_group_counts_once():
    from bitplan.plan.synthetic import GemmShape, profile_from_gemms

    tied = profile_from_gemms("tied", [GemmShape("emb.in", 4, 8, 2, 1, weight="emb.weight"),
                                       GemmShape("emb.out", 4, 2, 8, 2, weight="emb.weight", weight_shape=(2, 8))])
    (group,) = group_by_prefix(tied, 1)
    assert group.params == 16 and group.macs == 64 + 64


def test_top_keeps_the_largest_and_breaks_ties_in_profile_order():
    profile = resnet20_profile()
    groups, how = summarize(profile, depth=2, top=3)
    # every block of two 2,359,296-MAC convs ties at 4,718,592; the first three in profile order win
    assert [(group.prefix, group.macs) for group in groups] == [
        ("layer1.0", 4_718_592), ("layer1.1", 4_718_592), ("layer1.2", 4_718_592)]
    assert how.startswith("3 largest of 11 module prefixes of depth 2")
    (single,), _ = summarize(profile, top=1)
    assert (single.prefix, single.indices) == ("layer1.0.conv1", (1,))
    with pytest.raises(SpecError, match="--top 0"):
        largest(groups, 0)
    with pytest.raises(SpecError, match="--depth 0"):
        group_by_prefix(profile, 0)


def test_cli_depth_and_top_on_traced_resnet20(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["profile", "zoo:resnet20", "--depth", "1", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = {row["module"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    assert list(rows) == ["conv1", "layer1", "layer2", "layer3", "fc"]
    layer2 = rows["layer2"]
    assert (layer2["indices"], int(layer2["gemms"]), int(layer2["params"]), int(layer2["macs"])) == (
        "7-12", LAYER2["count"], LAYER2["params"], LAYER2["macs"])
    assert (int(layer2["k_min"]), int(layer2["k_max"]), int(layer2["m_min"])) == (144, 288, 256)
    table = runner.invoke(app, ["profile", "zoo:resnet20", "--depth", "1", "--top", "1"])
    assert table.exit_code == 0 and "layer1" in table.stdout and "14,155,776" in table.stdout
    assert "layer2" not in table.stdout and "1 largest of 5 module prefixes" in table.stdout
    refused = runner.invoke(app, ["profile", "zoo:resnet20", "--top", "3", "--format", "json"])
    assert refused.exit_code == 2 and "JSON is always the whole profile" in refused.output


def test_plan_plot_option_writes_a_png(tmp_path):
    target = tmp_path / "plots" / "plan.png"
    result = CliRunner().invoke(app, ["plan", "zoo:resnet20", "--factor", "A", "--strategy", "C-", "--plot",
                                      str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    refused = CliRunner().invoke(app, ["plan", "zoo:resnet20", "--grid", "--plot", str(tmp_path / "x.png")])
    assert refused.exit_code == 2 and "--plot draws one plan" in refused.output
