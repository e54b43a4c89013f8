"""``mlserve load``: send OIP v2 infer requests with sticky user keys and count the answers by version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from mlserve.cli._options import JsonOpt


def _render(out: Any, r: Any) -> None:
    from mlserve.cli._output import print_table

    print(f"{r.requests} request(s) to {r.model} at {r.url} in {r.seconds:g} s ({r.requests_per_second:g}/s), "
          f"{r.users} user(s), {r.errors} failed ({r.unanswered} without an answer)")
    rows = [[v, s.requests, s.errors, s.users, s.users_with_errors, s.p50_ms, s.p99_ms]
            for v, s in r.by_version.items()]
    print_table(out, ["version", "requests", "errors", "users", "users with errors", "p50 ms", "p99 ms"], rows,
                right={"requests", "errors", "users", "users with errors", "p50 ms", "p99 ms"})


def load(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The served model's name.")],
    server: Annotated[str, typer.Option("--server", metavar="URL", help="REST URL of mlserve serve.")] =
        "http://127.0.0.1:8000",
    requests: Annotated[Optional[int], typer.Option("--requests", metavar="N", min=1, help=(
        "Stop after N requests (default: run until --duration, SIGTERM or Ctrl-C)."))] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", metavar="SECONDS", min=0.0, help=(
        "Stop after this many seconds."))] = None,
    users: Annotated[int, typer.Option("--users", metavar="N", min=1, help=(
        "Distinct users user-0 ... user-(N-1), taken in turn; each always sends the same row."))] = 100,
    threads: Annotated[int, typer.Option("--threads", metavar="N", min=1, max=64, help=(
        "Concurrent keep-alive connections."))] = 4,
    rate: Annotated[Optional[float], typer.Option("--rate", metavar="PER_SECOND", help=(
        "Requests per second, all threads together (default: as fast as the server answers)."))] = None,
    header: Annotated[str, typer.Option("--sticky-header", metavar="NAME", help=(
        "The header that carries the user key (mlserve serve --sticky-header)."))] = "X-User-Id",
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seeds the rows users send.")] = 0,
    records: Annotated[Optional[Path], typer.Option("--records", metavar="FILE", help=(
        "Write every request (key, status, version, variant, latency) as JSON lines."))] = None,
    ready_timeout: Annotated[float, typer.Option("--ready-timeout", metavar="SECONDS", help=(
        "Wait this long for the server to be ready before the first request."))] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Send OIP v2 infer requests with a sticky user key; count answers and errors by version.

    Every response names the version and variant that answered it (X-Model-Version, X-Model-Variant):
    the summary gives requests, errors (no answer or status >= 400), users and latency per version.
    SIGTERM or Ctrl-C stop it cleanly: the requests in flight finish and the summary is printed.

    \b
    Examples:
      mlserve load churn --server http://127.0.0.1:8000 --requests 200
      mlserve load churn --users 500 --rate 100 --records load.jsonl --json
    """
    import signal
    import threading

    from mlserve.cli._output import emit
    from mlserve.loadgen import LoadGenerator, wait_ready

    wait_ready(server, ready_timeout)
    gen = LoadGenerator(server, model, users=users, threads=threads, header=header, rate=rate, seed=seed)
    fh = records.open("w") if records is not None else None

    def sink(record: Any) -> None:
        if fh is not None:
            fh.write(record.model_dump_json() + "\n")

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: gen.stop())
    try:
        gen.run(requests=requests, duration=duration, sink=sink)
    finally:
        if fh is not None:
            fh.close()
    emit("load", gen.report(records), as_json, _render)
