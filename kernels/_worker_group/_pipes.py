"""Pipes between the members of a worker group that run on one machine (see ``_group``).

Over the workers' comms, a part goes from a member's thread to its worker's event loop, over
TCP to the peer's event loop, and on to the peer's thread: about 0.3 ms a round on an idle
machine and 0.6-0.7 ms after the last member's pass, when the loops wait for cores that the
members' kernels hold. Members on one machine instead write small parts straight into a named
pipe that the peer's thread reads (as MPI moves messages between the processes of a node
through shared memory): no event loop on the way.

Each member makes one pipe per peer on its machine, ``from-<peer>``, in a folder of its own
(mode 0700) under ``$TMPDIR/hpcjobs-<uid>`` (0700, checked to be this user's); the pipes
are unlinked as soon as both ends are open, so nothing is left behind even if a member dies.
A part is written only when it fits ``PIPE_BUF`` bytes with its header, so that the write
is atomic and never blocks (a full pipe, a larger part or a closed pipe: the caller sends it
over the workers' comms instead).
"""

from __future__ import annotations

import os
import select
import socket
import stat
import struct
import tempfile
import threading

#: (round, payload length) before each part
_HEADER = struct.Struct("<qI")
#: the largest part written to a pipe, header included: atomic, all or nothing
LIMIT = select.PIPE_BUF


def machine_id() -> str:
    """What tells apart the kernels the members run on: the host name and this boot's id."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _private_base() -> str | None:
    """``$TMPDIR/hpcjobs-<uid>``, made 0700; None if it is not this user's alone."""
    base = os.path.join(tempfile.gettempdir(), f"hpcjobs-{os.getuid()}")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        st = os.lstat(base)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return base


class LocalPipes:
    """One member's pipes to its peers on this machine, and the parts read from them.

    ``got`` maps (round, peer) to the payloads read so far; :meth:`wait` reads more. A
    doorbell (:meth:`ring`) wakes :meth:`wait` when a part arrives the other way.
    """

    def __init__(self, group: str, member: int):
        self.read: dict[int, int] = {}
        self.write: dict[int, int] = {}
        self.got: dict[tuple[int, int], bytes] = {}
        self._buf: dict[int, bytearray] = {}
        self._made: list[str] = []
        self._peer_of: dict[int, int] = {}
        self._bell_r, self._bell_w = os.pipe()
        self._bell_lock = threading.Lock()  # the comms' thread rings; never a closed fd
        os.set_blocking(self._bell_r, False)
        os.set_blocking(self._bell_w, False)
        self._poll = select.poll()
        self._poll.register(self._bell_r, select.POLLIN)
        base = _private_base()
        try:
            self.folder = (tempfile.mkdtemp(prefix=f"{group[:12]}-{member}-", dir=base)
                           if base else None)
        except OSError:
            self.folder = None

    def make_inbound(self, peers: list[int]) -> bool:
        """A pipe from each of ``peers``, opened for reading (so that they can open it)."""
        if self.folder is None:
            return False
        try:
            for peer in peers:
                path = os.path.join(self.folder, f"from-{peer}")
                os.mkfifo(path, 0o600)
                self._made.append(path)
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                self.read[peer] = fd
                self._buf[peer] = bytearray()
                self._peer_of[fd] = peer
                self._poll.register(fd, select.POLLIN)
        except OSError:
            return False
        return True

    def open_outbound(self, me: int, folders: dict[int, str]) -> None:
        """Open the pipe ``from-<me>`` of each peer (its folder given) for writing; a peer
        whose pipe does not open (another file system, say) gets its parts over the comms."""
        for peer, folder in folders.items():
            try:
                self.write[peer] = os.open(os.path.join(folder, f"from-{me}"),
                                           os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                continue

    def unlink(self) -> None:
        """Remove the pipes' names and the folder (open ends keep working)."""
        for path in self._made:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._made.clear()
        if self.folder is not None:
            try:
                os.rmdir(self.folder)
            except OSError:
                pass
            self.folder = None

    def send(self, peer: int, round_: int, payload: bytes) -> bool:
        """Write one part to ``peer``'s pipe; False if it must go over the comms."""
        fd = self.write.get(peer)
        if fd is None or _HEADER.size + len(payload) > LIMIT:
            return False
        try:
            os.write(fd, _HEADER.pack(round_, len(payload)) + payload)
        except BlockingIOError:  # pipe full: this part goes the other way
            return False
        except OSError:  # the reader is gone
            os.close(self.write.pop(peer))
            return False
        return True

    def ring(self) -> None:
        """Wake :meth:`wait` (a part came in over the comms); from any thread."""
        with self._bell_lock:
            if self._bell_w < 0:  # closed
                return
            try:
                os.write(self._bell_w, b"\0")
            except OSError:  # full: a wake-up is pending anyway
                pass

    def wait(self, timeout: float) -> None:
        """Read what the pipes hold, waiting up to ``timeout`` seconds for something."""
        for fd, _ in self._poll.poll(max(0, int(timeout * 1000))):
            if fd == self._bell_r:
                try:
                    while os.read(fd, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            self._read(fd)

    def _read(self, fd: int) -> None:
        peer = self._peer_of[fd]
        buf = self._buf[peer]
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not data:  # the writer closed its end: nothing more will come this way
                self._poll.unregister(fd)
                os.close(self.read.pop(peer))
                break
            buf += data
        while len(buf) >= _HEADER.size:
            round_, n = _HEADER.unpack_from(buf)
            if len(buf) < _HEADER.size + n:
                break
            self.got[(round_, peer)] = bytes(buf[_HEADER.size:_HEADER.size + n])
            del buf[:_HEADER.size + n]

    def close(self) -> None:
        """Close every end and remove what is left on disk."""
        self.unlink()
        with self._bell_lock:
            fds = [*self.read.values(), *self.write.values(), self._bell_r, self._bell_w]
            self._bell_r = self._bell_w = -1
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.read.clear()
        self.write.clear()
