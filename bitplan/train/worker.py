"""The process ``bitplan train --nproc N`` starts N times under torchrun: ``python -m bitplan.train.worker JOB``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bitplan.errors import BitplanError
from bitplan.train.distributed import Job, is_main_process
from bitplan.train.seeds import train_seeds


def main(argv: list[str]) -> int:
    """Run the job file's seeds; rank 0 prints the summary JSON when asked. Exit 1 if a seed failed.

    A ``BitplanError`` (bad input found only once the processes run) exits 2; the first rank that
    fails hands its message to the launcher through ``job.error_file``, which raises it in the parent.
    """
    job = Job.model_validate_json(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        summary = train_seeds(job.config, job.seeds, resume=job.resume, overwrite=job.overwrite, progress=job.progress)
    except BitplanError as error:
        if job.error_file:
            try:  # the first rank to fail reports ("x": never overwrite another rank's report)
                with open(job.error_file, "x", encoding="utf-8") as report:
                    report.write(json.dumps({"kind": type(error).__name__, "message": str(error)}))
            except FileExistsError:
                pass
        return error.exit_code
    if job.print_json and is_main_process():
        sys.stdout.write(summary.model_dump_json(indent=2) + "\n")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
