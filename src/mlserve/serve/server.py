"""The server's lifecycle: bind, load, report ready, follow stages, drain on SIGTERM, release, return.

Order of a graceful stop (SIGTERM or SIGINT):
1. readiness turns 503 (``/v2/health/ready``, ``/ready``, gRPC ServerReady false) at once, while every
   request is still served for ``drain_delay`` seconds, so load balancers stop sending;
2. the listeners close; requests in flight (and those queued) finish within ``drain_timeout``;
3. only then are the sessions released, and :func:`run_server` returns (the command exits 0).
A second SIGTERM or SIGINT ends the process at once (exit 128 + the signal number).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from typing import Any, Callable, Iterator

from pydantic import BaseModel, Field

from mlserve._deps import require
from mlserve.errors import UsageError
from mlserve.serve.options import ServeOptions
from mlserve.serve.state import JsonLog, ServerState


class ServedModel(BaseModel):
    """One variant of a served model when the server stopped (a model without a split: its one variant)."""

    name: str
    version: str | None
    follows: str | None = None
    swaps: int = 0
    variant: str = "stable"
    weight: float = 100.0


class ServeResult(BaseModel):
    """How the server ended (returned after a graceful stop)."""

    http_url: str
    grpc_url: str | None
    models: list[ServedModel]
    admin_url: str | None = None
    stopped_by: str
    drained_seconds: float
    uptime_seconds: float
    warnings: list[str] = Field(default_factory=list)


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # --workers: every worker binds the port, the kernel spreads connections over them
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="choose another --http-port / --grpc-port / --admin-port, or stop what uses it") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def run_server(options: ServeOptions, *, log: Callable[..., None] | None = None,
               on_listening: Callable[..., None] | None = None) -> ServeResult:
    """Serve until SIGTERM/SIGINT; raise startup errors (bad ref, port in use, model that cannot load)."""
    options.check()
    from mlserve.serve.sources import parse_model_ref

    for ref in options.refs:  # a typo in a REF fails before any heavy import or bind
        parse_model_ref(ref)
    for module in ("orjson", "uvicorn", "httptools", "prometheus_client", *(("grpc",) if options.grpc_port else ())):
        require(module, purpose="mlserve serve")
    uvloop = require("uvloop", purpose="mlserve serve")
    state = ServerState(options, log or JsonLog())
    state.repo.precheck()
    if options.workers > 1:
        from mlserve.serve.workers import supervise

        return supervise(options, state.log, on_listening)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_main(state, on_listening))


class _Stop:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signal: str | None = None

    def __call__(self, signum: int) -> None:
        if self.signal is not None:  # the second one: no more waiting
            os._exit(128 + signum)
        self.signal = signal.Signals(signum).name
        self.event.set()


@contextlib.contextmanager
def _signals(loop: asyncio.AbstractEventLoop, stop: _Stop) -> Iterator[None]:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _main(state: ServerState, on_listening: Callable[..., None] | None) -> ServeResult:
    opts = state.options
    loop = asyncio.get_running_loop()
    stop = _Stop()
    uvicorn = require("uvicorn", purpose="mlserve serve")
    from mlserve.serve.protocol.rest import RestApp

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # signals are ours: see _signals
            yield

    if opts.reuse_port:
        # A worker of --workers N loads before it binds the shared port: the kernel then sends
        # connections only to workers that can serve them (the others are ready or not listening).
        await state.repo.start()
    http_sock = _bind(opts.host, opts.http_port, opts.reuse_port)
    admin_sock = _bind(opts.admin_host, opts.admin_port) if opts.admin_token else None
    rest = RestApp(state)

    def config(app: Any) -> Any:
        return uvicorn.Config(app, http="httptools", loop="none", lifespan="off", ws="none",
                              interface="asgi3", access_log=False, log_config=None, log_level="warning",
                              server_header=False, date_header=False, timeout_graceful_shutdown=opts.drain_timeout,
                              timeout_keep_alive=75, backlog=2048)

    http = _Server(config(rest))
    admin = None
    if admin_sock is not None:
        from mlserve.serve.control import SplitControl
        from mlserve.serve.protocol.admin import AdminApp

        admin = _Server(config(AdminApp(state, SplitControl(state.repo, state.log), opts.admin_token or "")))
    grpc_server = None
    grpc_url = None
    admin_url = _url("http", opts.admin_host, opts.admin_port) if admin is not None else None
    with _signals(loop, stop):
        http_task = asyncio.create_task(http.serve(sockets=[http_sock]))
        admin_task = asyncio.create_task(admin.serve(sockets=[admin_sock])) if admin is not None else None
        if opts.grpc_port:
            grpc_server = await _start_grpc(state)
            grpc_url = _url("grpc", opts.host, opts.grpc_port)
        http_url = _url("http", opts.host, opts.http_port)
        state.log("listening", http=http_url, grpc=grpc_url, admin=admin_url, pid=os.getpid())
        if on_listening is not None:
            on_listening(http_url, grpc_url, admin_url)
        follower = flusher = None
        try:
            load = asyncio.create_task(state.repo.start() if not opts.reuse_port else asyncio.sleep(0))
            waiter = asyncio.create_task(stop.event.wait())
            await asyncio.wait({load, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if load.done():
                load.result()  # a model that cannot load: stop and report it
                state.metrics.set_ready(True)
                state.log("ready", models={n: g.primary.active.version for n, g in state.repo.models.items()
                                           if g.primary.active},
                          variants={n: {h.variant: h.active.version for h in g.handles if h.active}
                                    for n, g in state.repo.models.items()})
                follower = asyncio.create_task(state.repo.follow())
                if state.repo.assignments is not None:
                    flusher = asyncio.create_task(_flush_every(state.repo.assignments, 0.5))
                await waiter
            else:
                load.cancel()
        except BaseException:
            http.should_exit = True
            if admin is not None:
                admin.should_exit = True
            if grpc_server is not None:
                await grpc_server.stop(0)
            await asyncio.gather(http_task, *([admin_task] if admin_task else []), return_exceptions=True)
            raise
        # ---- graceful stop
        drain_started = time.perf_counter()
        state.draining = True
        state.metrics.set_ready(False)
        state.log("draining", signal=stop.signal, drain_delay=opts.drain_delay, drain_timeout=opts.drain_timeout)
        await asyncio.sleep(opts.drain_delay)
        if follower is not None:
            follower.cancel()
        if flusher is not None:
            flusher.cancel()
        http.should_exit = True
        closing = [http_task]
        if admin is not None and admin_task is not None:
            admin.should_exit = True
            closing.append(admin_task)
        if grpc_server is not None:
            closing.append(asyncio.ensure_future(grpc_server.stop(opts.drain_timeout)))
        await asyncio.gather(*closing, return_exceptions=True)
        await state.repo.release(opts.drain_timeout)
        drained = time.perf_counter() - drain_started
        state.log("stopped", signal=stop.signal, drained_seconds=round(drained, 3), rest_accepted=rest.accepted,
                  rest_answered=rest.answered, rest_abandoned_by_client=rest.abandoned)
    models = [ServedModel(name=g.name, variant=h.variant, weight=w, version=h.active.version if h.active else None,
                          follows=h.follows, swaps=h.swaps)
              for g in state.repo.models.values() for h, w in zip(g.handles, g.split.router.weights)]
    return ServeResult(http_url=http_url, grpc_url=grpc_url, admin_url=admin_url, models=models,
                       stopped_by=stop.signal or "", drained_seconds=round(drained, 3),
                       uptime_seconds=round(time.time() - state.started, 3))


async def _flush_every(log: Any, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        log.flush()


async def _start_grpc(state: ServerState) -> Any:
    grpc = require("grpc", purpose="the gRPC endpoint of mlserve serve")
    require("grpc_health.v1.health_pb2", purpose="the gRPC health service of mlserve serve")
    from mlserve.serve.protocol.grpc_health import add_health_service
    from mlserve.serve.protocol.grpc_service import generic_handler

    opts = state.options
    limit = opts.max_request_bytes
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
        ("grpc.so_reuseport", 1 if opts.reuse_port else 0),
        # gRPC core cancels calls beyond 1000 pending (3000 hard) before a handler sees them; let them reach
        # the model queue, which answers UNAVAILABLE at once when it is full.
        ("grpc.server.max_pending_requests", 100_000),
        ("grpc.server.max_pending_requests_hard_limit", 100_000),
    ])
    server.add_generic_rpc_handlers((generic_handler(state),))
    add_health_service(server, state)
    host = f"[{opts.host}]" if ":" in opts.host else opts.host
    try:
        port = server.add_insecure_port(f"{host}:{opts.grpc_port}")
    except RuntimeError as exc:
        raise UsageError(f"cannot listen for gRPC on {opts.host}:{opts.grpc_port}: {exc}",
                         hint="choose another --grpc-port (0 disables gRPC)") from None
    if port == 0:
        raise UsageError(f"cannot listen for gRPC on {opts.host}:{opts.grpc_port}",
                         hint="choose another --grpc-port (0 disables gRPC)")
    await server.start()
    return server
