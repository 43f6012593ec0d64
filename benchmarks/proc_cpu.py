"""CPU time of processes on this machine, from /proc (Linux): what the benchmarks charge to the
database server and to the whole machine, beside the measured process's own."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int | str) -> tuple[str, float] | None:
    """(command name, CPU seconds used so far: user + system) of process ``pid``; None when it
    is gone or unreadable."""
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
        fields = st.rsplit(")", 1)[1].split()
        return st[st.index("(") + 1:st.rindex(")")], (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu() -> tuple[float, float]:
    """(CPU seconds every process of the machine has used, of them PostgreSQL's server processes):
    what a send costs the whole machine, its sink and database included."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    pg = 0.0
    for d in Path("/proc").glob("[0-9]*"):
        got = process_cpu(d.name)
        if got is not None and got[0].startswith("postgres"):
            pg += got[1]
    return busy / TICK, pg
