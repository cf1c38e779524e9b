"""Which process holds which TCP socket, from Linux's /proc (no psutil): enough to tell
which intake worker answered a connection without the workers saying so."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

LISTEN, ESTABLISHED = "0A", "01"  # the st column of /proc/net/tcp (include/net/tcp_states.h)


class TcpSocket(NamedTuple):
    local_port: int
    remote_port: int
    state: str
    rx_queue: int  # bytes received but not yet read by the process
    inode: int


def tcp_sockets() -> list[TcpSocket]:
    """Every IPv4 TCP socket of this network namespace (/proc/net/tcp; ports in hex)."""
    sockets = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, queues, inode = fields[1], fields[2], fields[3], fields[4], fields[9]
        sockets.append(
            TcpSocket(
                int(local.split(":")[1], 16),
                int(remote.split(":")[1], 16),
                state,
                int(queues.split(":")[1], 16),
                int(inode),
            )
        )
    return sockets


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` has open (empty once it is gone)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (field 4 of /proc/PID/stat)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def listening(parent: int, port: int) -> set[int]:
    """The children of ``parent`` that listen on ``port``: intake's workers."""
    listeners = {s.inode for s in tcp_sockets() if s.state == LISTEN and s.local_port == port}
    return {pid for pid in children(parent) if socket_inodes(pid) & listeners}


def connection(local_port: int, remote_port: int) -> TcpSocket | None:
    """The established socket from ``local_port`` to ``remote_port`` (for a server, the
    accepted socket of the client at ``remote_port``)."""
    for s in tcp_sockets():
        if s.local_port == local_port and s.remote_port == remote_port and s.state == ESTABLISHED:
            return s
    return None


def owner(local_port: int, remote_port: int, pids: set[int]) -> int | None:
    """Which of ``pids`` holds the socket from ``local_port`` to ``remote_port``."""
    found = connection(local_port, remote_port)
    if found is None:
        return None
    return next((pid for pid in pids if found.inode in socket_inodes(pid)), None)


def connected_to(pid: int, remote_port: int) -> bool:
    """Whether ``pid`` holds an established connection to ``remote_port`` (the broker's)."""
    peers = {
        s.inode for s in tcp_sockets() if s.remote_port == remote_port and s.state == ESTABLISHED
    }
    return bool(socket_inodes(pid) & peers)
