"""A private, temporary PostgreSQL 15 cluster for benchmarks that need settings the shared server must not get
(shared_preload_libraries = 'pg_net', a statement log): initdb into a temporary directory, its own port and
socket directory, stopped and deleted afterwards. The machine's main cluster is never touched.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import free_port

PG_BIN = Path(os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
OWNER = "postgres"  # initdb refuses to run as root: the cluster belongs to this user when we are root


def why_not(*, libraries: tuple[str, ...] = ()) -> str | None:
    """None when a temporary cluster with these preload libraries can be started here, else the reason."""
    if not (PG_BIN / "initdb").exists():
        return f"no initdb in {PG_BIN} (set BENCH_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    pkglib = _pkglibdir()
    for lib in libraries:
        if not (pkglib / f"{lib}.so").exists():
            return f"{lib} is not installed ({pkglib / (lib + '.so')} missing; see docs/BENCHMARKS.md to build it)"
    return None


def _pkglibdir() -> Path:
    out = subprocess.run([str(PG_BIN / "pg_config"), "--pkglibdir"], capture_output=True, text=True, check=False)
    return Path(out.stdout.strip() or "/usr/lib/postgresql/15/lib")


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", OWNER, "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def temp_cluster(settings: dict[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """Yield (admin URL, data directory) of a fresh cluster started with `settings` (-c name=value)."""
    tmp = Path(tempfile.mkdtemp(prefix="genretry-bench-pg-"))
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(tmp, OWNER)
        shutil.chown(sock, OWNER)
    port = free_port()
    started = False
    try:
        subprocess.run(_as_owner([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                  "--no-sync", "-E", "UTF8", "--locale=C"]),
                       check=True, capture_output=True)
        options = {"listen_addresses": "127.0.0.1", "port": str(port), "unix_socket_directories": str(sock),
                   "fsync": "on", "max_connections": "200", **(settings or {})}
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        # runuser resets the soft limit of open files to 1024: pg_net keeps a socket per request of a batch
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        argv = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(tmp / "server.log"), "-o", opts, "-w", "-t", "60",
                "start"]
        start = " ".join(shlex.quote(a) for a in argv)
        limit = f"ulimit -n {nofile} 2>/dev/null; " if nofile != resource.RLIM_INFINITY else ""
        subprocess.run(_as_owner(["sh", "-c", f"{limit}exec {start}"]), check=True, capture_output=True)
        started = True
        deadline = time.monotonic() + 30
        while subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("temporary cluster did not become ready")
            time.sleep(0.2)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", tmp
    finally:
        if started:
            subprocess.run(_as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                           capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
