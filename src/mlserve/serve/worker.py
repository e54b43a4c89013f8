"""One worker process of ``mlserve serve --workers N`` (started by :mod:`mlserve.serve.workers`).

Reads its options as JSON on stdin; writes its :class:`ServeResult` to ``<dir>/result-<i>.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    index, directory = int(sys.argv[1]), Path(sys.argv[2])
    from mlserve.errors import MlserveError
    from mlserve.serve.server import run_server
    from mlserve.serve.state import JsonLog
    from mlserve.serve.workers import decode

    options = decode(sys.stdin.read())
    base = JsonLog(sys.stderr)

    def log(event: str, level: str = "info", **fields: object) -> None:
        base(event, level, worker=index, **fields)

    try:
        result = run_server(options, log=log)
    except MlserveError as exc:
        print(f"error: worker {index}: {exc}", file=sys.stderr)
        return exc.exit_code
    (directory / f"result-{index}.json").write_text(result.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
