"""Serving the app in several worker processes that share the connections evenly.

uvicorn's own multi-process mode gives every worker the one listening socket: the worker that
wakes first takes every connection waiting in it (asyncio accepts up to the backlog per
wake-up), so a burst of keep-alive connections lands mostly on one process. Measured here
(2 workers, 100 connections opened at once, 5 tries): 10/90, 16/84, 38/62, 46/54, 46/54. A
keep-alive connection stays with the process that accepted it, so at release time (放号) one
core did most of the work while the other idled, and its queue set the p99.

Here the supervisor opens one listening socket per worker, all bound to the same address with
SO_REUSEPORT, and the kernel spreads new connections over them by a hash of their addresses;
each worker accepts only on its own. The supervisor keeps the sockets open, so connections
queued for a worker that died wait for its replacement, which it starts on the same socket.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn
from uvicorn._subprocess import get_subprocess
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

log = logging.getLogger(__name__)

# Linux balances a SO_REUSEPORT group's connections over its sockets; macOS and FreeBSD (which
# has SO_REUSEPORT_LB for that) give them all to one, so elsewhere `carenet serve` keeps
# uvicorn's shared socket.
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def serve_workers(app: str, host: str, port: int, workers: int) -> int:
    """Serve the app factory ``app`` ("module:function") in ``workers`` processes until SIGINT
    or SIGTERM; the exit status. OSError if the address cannot be listened on."""
    config = uvicorn.Config(
        app, factory=True, host=host, port=port, workers=workers, log_level="warning"
    )
    if not REUSE_PORT:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    return Workers(config, listening_sockets(host, port, workers, config.backlog)).run()


def listening_sockets(host: str, port: int, count: int, backlog: int) -> list[socket.socket]:
    """``count`` sockets listening on one address, the kernel balancing new connections.

    OSError (address in use) if anything listens there already, even another SO_REUSEPORT
    group of the same user (an old server still running), which would otherwise silently
    share the connections."""
    if count < 1:
        raise ValueError("at least one socket")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))  # without SO_REUSEPORT: fails if anything listens
        port = probe.getsockname()[1]  # port 0: the free port found, for the whole group
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Workers:
    """Starts one uvicorn worker per socket and keeps them running: SIGINT, SIGTERM or SIGQUIT
    stop them all; SIGHUP replaces them one by one (each socket keeps its queued connections
    meanwhile). A worker that exits is replaced; one that hangs is not detected (uvicorn's own
    supervisor pings its workers; this one does not yet)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.processes: list[BaseProcess] = []
        self.signals: list[int] = []  # appended by the handler, handled by the loop

    def run(self) -> int:
        """Serve until told to stop; the exit status (non-zero if a worker could not start)."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP):
            signal.signal(sig, self._queue)
        status = 0
        try:
            for sock in self.sockets:
                self.processes.append(self._start(sock))
            while status == 0 and not self._stopping():
                time.sleep(0.5)
                status = self._keep_alive()
        finally:
            self._terminate()
        return status

    def _queue(self, signum: int, frame: FrameType | None) -> None:
        # Only a list append: a signal handler must not take a lock the interrupted code holds.
        self.signals.append(signum)

    def _stopping(self) -> bool:
        while self.signals:
            sig = self.signals.pop(0)
            if sig == signal.SIGHUP:
                self._restart()
            else:
                return True
        return False

    def _start(self, sock: socket.socket) -> BaseProcess:
        server = uvicorn.Server(self.config)
        process = get_subprocess(self.config, target=server.run, sockets=[sock])
        process.start()
        return process

    def _keep_alive(self) -> int:
        for i, process in enumerate(self.processes):
            if process.is_alive():
                continue
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # The app, its database or its settings are broken: every restart would fail.
                log.error("worker %s failed to start; stopping", process.pid)
                return STARTUP_FAILURE
            if self.signals:
                return 0  # a stop may be why it exited (Ctrl-C reaches every process)
            log.warning("worker %s exited (%s); starting another", process.pid, process.exitcode)
            self.processes[i] = self._start(self.sockets[i])
        return 0

    def _restart(self) -> None:
        for i, process in enumerate(self.processes):
            self._stop_process(process)
            self.processes[i] = self._start(self.sockets[i])

    def _stop_process(self, process: BaseProcess) -> None:
        if process.is_alive():
            process.terminate()
        self._reap(process)

    def _reap(self, process: BaseProcess) -> None:
        """Wait for a terminated worker to finish its requests; kill it if it does not."""
        process.join(timeout=self.config.timeout_graceful_shutdown or 30)
        if process.is_alive():
            process.kill()
            process.join()

    def _terminate(self) -> None:
        for process in self.processes:  # all at once, so that they shut down together
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            self._reap(process)
        for sock in self.sockets:
            sock.close()
