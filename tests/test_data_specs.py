"""Spec parsing, the source registry, option validation and the error messages of load_data."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitplan.data import DataRequest, load_data, sources
from bitplan.data.registry import parse_spec
from bitplan.errors import DataError


def test_every_documented_kind_is_registered() -> None:
    documented = {
        "digits": False, "cifar10": True, "cifar100": True, "imagefolder": True, "text": True, "synthetic": False
    }
    registered = {source.kind: source.takes_path for source in sources()}
    assert {kind: registered.get(kind) for kind in documented} == documented


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("digits", ("digits", None, {})),
        ("synthetic?n=64&classes=3", ("synthetic", None, {"n": "64", "classes": "3"})),
        ("text:/data/ptb?level=char", ("text", Path("/data/ptb"), {"level": "char"})),
        ("CIFAR10:/d/cifar-10-batches-py", ("cifar10", Path("/d/cifar-10-batches-py"), {})),
        ("imagefolder:C:/data/imagenet?size=64", ("imagefolder", Path("C:/data/imagenet"), {"size": "64"})),
    ],
)
def test_parse_spec(spec: str, expected: tuple) -> None:
    assert parse_spec(spec) == expected


def test_parse_spec_expands_home() -> None:
    _, path, _ = parse_spec("text:~/ptb")
    assert path == Path.home() / "ptb"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("digitz", r"unknown data kind `digitz`.*did you mean `digits`\?"),
        ("cifar-10:/x", r"unknown data kind `cifar-10`.*did you mean `cifar10`\?.*known kinds: cifar10, cifar100"),
        ("cifar10", r"data kind `cifar10` needs a path: write `cifar10:PATH`"),
        ("digits:/tmp", r"data kind `digits` takes no path"),
        ("synthetic?m=3", r"unknown option `m`.*`synthetic` accepts: `n`, `test_n`"),
        ("digits?n=3", r"unknown option `n`.*`digits` accepts: none"),
        ("synthetic?n", r"option `n` in data spec `synthetic\?n` is not `name=value`"),
        ("synthetic?n=1&n=2", r"option `n` appears twice"),
        ("synthetic?n=x", r"option `n=x` in data spec `synthetic\?n=x` must be an integer >= 1"),
        ("synthetic?n=0", r"must be an integer >= 1"),
        ("synthetic?classes=1", r"option `classes=1` .* must be an integer >= 2"),
        ("synthetic?shape=3x0", r"option `shape=3x0` .* must be positive integers joined by `x`"),
        ("synthetic?task=regression", r"option `task=regression` .* not one of classification, language_model"),
        ("cifar10:/no/such/dir", r"data path `/no/such/dir` .* does not exist.*nothing is ever downloaded"),
        ("9lives", r"data spec `9lives` is malformed"),
    ],
)
def test_spec_errors_are_one_clear_data_error(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_data(spec)


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("Yes", True), ("1", True), ("off", False), ("0", False)])
def test_bool_option(raw: str, value: bool) -> None:
    request = DataRequest("s", "cifar10", None, {"augment": raw})
    assert request.bool_option("augment", not value) is value


def test_bool_option_refuses_other_words() -> None:
    request = DataRequest("cifar10:/x?augment=maybe", "cifar10", None, {"augment": "maybe"})
    with pytest.raises(DataError, match=r"option `augment=maybe` .* must be true or false"):
        request.bool_option("augment", True)


def test_absent_options_take_their_defaults() -> None:
    request = DataRequest("synthetic", "synthetic", None, {})
    assert request.int_option("n", 512) == 512
    assert request.choice_option("level", "word", ("word", "char")) == "word"
    assert request.shape_option("shape") is None
    assert DataRequest("s", "s", None, {"shape": "3X32x32"}).shape_option("shape") == (3, 32, 32)
