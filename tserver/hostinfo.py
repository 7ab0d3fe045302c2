"""The compute host's state, from psutil and socket."""

from __future__ import annotations

import os
import socket

import psutil

from RPC.ttypes import CpuStatus, DiskStatus, HostStatus, MemoryStatus


def prime_cpu_percent() -> None:
    """Start psutil's CPU sampling window, so the first real reading means something."""
    psutil.cpu_percent(interval=None)


def host_status(disk_path: str) -> HostStatus:
    """CPU, memory, the disk holding `disk_path`, host name and address (blocking: a DNS lookup)."""
    hostname = socket.gethostname()
    try:
        ip = socket.gethostbyname(hostname)
    except OSError:
        ip = "127.0.0.1"
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(disk_path)
    return HostStatus(
        hostname=hostname,
        ip=ip,
        cpu=CpuStatus(
            percent=float(psutil.cpu_percent(interval=None)),
            count=psutil.cpu_count() or 1,
            load_average=[float(x) for x in os.getloadavg()],
        ),
        memory=MemoryStatus(total=memory.total, available=memory.available, percent=float(memory.percent)),
        disk=DiskStatus(path=disk_path, total=disk.total, free=disk.free, percent=float(disk.percent)),
    )
