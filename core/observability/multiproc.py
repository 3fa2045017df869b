"""prometheus-client's multiprocess mode, switched on for memscribe's worker processes.

Under Celery's prefork pool every child is a process of its own: a counter kept in memory would
be seen by nobody (the exporter is another process) and lost at each child's exit. In
multiprocess mode each process writes its samples to memory-mapped files in one directory
(``PROMETHEUS_MULTIPROC_DIR``), and the exporter sums them at scrape time.

prometheus-client picks its value class when it is first imported, which in a Celery process
happens before memscribe runs (Flower's CLI plugin imports it). So ``configure`` also swaps the
class: metrics created afterwards write to files. It is called from the worker's and beat's
start-up signals only, never in Flower, so Flower's own per-worker series (PR#1492) never reach
our directory.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
# Containers sharing one metrics volume each have their own pid namespace: two processes with
# pid 7 would write the same file. So files are named by host and pid ("counter_<host>-<pid>.db").
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:64] or "host"


def process_identifier(pid: int | None = None) -> str:
    """This process's (or ``pid``'s, on this host) name in the metrics files."""
    return f"{_HOST}-{os.getpid() if pid is None else pid}"


def configure(metrics_dir: str) -> Path:
    """Make this process (and the children it forks) write samples under ``metrics_dir``."""
    path = Path(metrics_dir).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(path)
    from prometheus_client import values

    values.ValueClass = values.MultiProcessValue(process_identifier)  # type: ignore[no-untyped-call]
    return path


def is_configured() -> bool:
    return bool(os.environ.get(ENV))


def process_dead(pid: int) -> None:
    """Forget a dead process's live gauges (``livesum``/``liveall``); counters stay summed."""
    directory = os.environ.get(ENV)
    if not directory:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(process_identifier(pid), directory)  # type: ignore[no-untyped-call]
