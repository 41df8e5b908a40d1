"""Every fenced bash and python example of README.md and docs/*.md runs (see tests/doc_examples.py).

bitplan commands run in-process through typer's CliRunner (the same app the console script calls),
each document in its own folder so that later examples find the files earlier ones wrote; python
blocks run in one subprocess, each block with fresh globals in its document's folder.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.cli.common import DebugState
from doc_examples import ROOT, Example, FixtureData, commands, examples, expand, reason_not_run, shrink, shrink_python

BASH = examples("bash")
PYTHON = examples("python")
ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")
BITPLAN = (["bitplan"], [".venv/bin/bitplan"], ["python", "-m", "bitplan"])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One folder per document (with a copy of the repository's plans/) and one fixture folder."""
    root = tmp_path_factory.mktemp("docs")
    return {"root": root, "fixtures": FixtureData(root / "fixtures"), "folders": {}}


def folder_for(workspace: dict, example: Example) -> Path:
    folders = workspace["folders"]
    if example.document not in folders:
        folder = workspace["root"] / example.document.stem
        folder.mkdir()
        shutil.copytree(ROOT / "plans", folder / "plans")  # a copy: examples may write plans of their own there
        folders[example.document] = folder
    return folders[example.document]


def run_bitplan(argv: list[str], folder: Path) -> tuple[int, str]:
    previous = Path.cwd()
    os.chdir(folder)
    try:
        result = CliRunner().invoke(app, argv)
    finally:
        os.chdir(previous)
        DebugState.enabled = False
    return result.exit_code, result.output + (repr(result.exception) if result.exception and result.exit_code not in (0, 1, 2) else "")


@pytest.mark.parametrize("example", BASH, ids=[example.name for example in BASH])
def test_bash_example_runs(example: Example, workspace: dict) -> None:
    folder = folder_for(workspace, example)
    variables: dict[str, str] = {}
    skipped = []
    for words in commands(example):
        assignment = ASSIGNMENT.match(words[0]) if len(words) == 1 else None
        if assignment:  # NAME=value; an absolute path becomes a folder of this document's workspace
            value = assignment.group(2)
            variables[assignment.group(1)] = str(folder / Path(value).name) if value.startswith("/") else value
            continue
        words = expand(words, variables)
        command = shlex.join(words)
        if (why := reason_not_run(command)) is not None:
            skipped.append(why)
            continue
        argv = [workspace["fixtures"].substitute(word) for word in words]
        prefix = next((p for p in BITPLAN if argv[: len(p)] == p), None)
        if "|" in argv:  # a pipeline: the shell runs it, with the installed `bitplan` on PATH
            path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
            done = subprocess.run(["bash", "-o", "pipefail", "-c", shlex.join(argv).replace("'|'", "|")], cwd=folder,
                                  capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": path})
            code, output = done.returncode, done.stdout + done.stderr
        elif prefix is None:
            done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=300)
            code, output = done.returncode, done.stdout + done.stderr
        else:
            code, output = run_bitplan(shrink(argv[len(prefix):]), folder)
        assert code == 0, f"{example.name}: `{command}` exited {code}:\n{output[-3000:]}"
    if skipped and len(skipped) == len(list(commands(example))):
        pytest.skip("; ".join(sorted(set(skipped))))


@pytest.fixture(scope="module")
def python_results(workspace: dict) -> dict[str, str | None]:
    """Run every python example in one subprocess; block name -> None (ran) or its traceback."""
    jobs = []
    for example in PYTHON:
        folder = folder_for(workspace, example)
        source = shrink_python(example.text).replace('"model.onnx"', repr(str(workspace["fixtures"].onnx())))
        jobs.append({"name": example.name, "source": source, "cwd": str(folder)})
    runner = Path(__file__).with_name("run_python_examples.py")
    done = subprocess.run([sys.executable, str(runner)], input=json.dumps(jobs), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("example", PYTHON, ids=[example.name for example in PYTHON])
def test_python_example_runs(example: Example, python_results: dict) -> None:
    failure = python_results[example.name]
    assert failure is None, f"{example.name} failed:\n{failure}"


def test_examples_were_found() -> None:
    """The finder itself works: README's bash and the planning guide's python are among them."""
    assert any(example.document.name == "README.md" for example in BASH)
    assert any(example.document.name == "planning.md" for example in PYTHON)
