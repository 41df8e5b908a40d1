"""Run documentation python blocks given as JSON on stdin; print {name: None or traceback} as JSON.

Each block gets fresh globals, its document's folder as the working directory, and
``sys.argv = [name, "pydoc-corpus"]`` for scripts that take an output folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback


def main() -> None:
    jobs = json.loads(sys.stdin.read())
    results: dict[str, str | None] = {}
    for job in jobs:
        os.chdir(job["cwd"])
        sys.argv = [job["name"], "pydoc-corpus"]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(job["source"], job["name"], "exec"), {"__name__": "__main__"})
            results[job["name"]] = None
        except BaseException:  # noqa: BLE001 - every failure of an example is reported, none stops the others
            results[job["name"]] = traceback.format_exc()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
