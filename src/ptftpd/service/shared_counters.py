"""The counters a worker pool shares in one memory map: per-worker active, finished and
failed transfers and bytes, the settings generation each worker serves, and the session
limit over all of them (`admit` under a POSIX record lock on the map's file: per
process, released by the kernel if a worker dies holding it)."""

from __future__ import annotations

import fcntl
import mmap
import struct
import tempfile

__all__ = ["SharedCounters", "WorkerGate"]

# The parent's settings generation, then one slot per worker: active, finished, failed,
# bytes, and the generation the worker serves (-1: not serving yet).
_HEADER = struct.Struct("=q")
_SLOT = struct.Struct("=qqqqq")


class SharedCounters:
    """Per-worker counters in shared memory; `gate(i)` is worker i's `SessionGate`."""

    def __init__(self, workers: int, max_sessions: int) -> None:
        self.workers = workers
        self.max_sessions = max_sessions
        size = _HEADER.size + _SLOT.size * workers
        # record locks need a file (an anonymous map has none); closed by close()
        self._file = tempfile.TemporaryFile()  # noqa: SIM115
        self._file.truncate(size)
        self._map = mmap.mmap(self._file.fileno(), size)
        for index in range(workers):
            self._write(index, 0, 0, 0, 0, -1)

    def _offset(self, index: int) -> int:
        return _HEADER.size + index * _SLOT.size

    def slot(self, index: int) -> tuple[int, int, int, int, int]:
        return _SLOT.unpack_from(self._map, self._offset(index))

    def _write(self, index: int, *fields: int) -> None:
        _SLOT.pack_into(self._map, self._offset(index), *fields)

    def totals(self) -> tuple[int, int, int, int]:
        """Active, finished, failed and bytes over every worker."""
        slots = [self.slot(i)[:4] for i in range(self.workers)]
        a, f, x, b = (sum(column) for column in zip(*slots, strict=True))
        return a, f, x, b

    def forget_active(self, index: int) -> None:
        """A worker died: its transfers died with it, and it serves nothing."""
        _, finished, failed, sent, _ = self.slot(index)
        self._write(index, 0, finished, failed, sent, -1)

    # -- settings generations (parent writes the header, each worker its slot) -------
    @property
    def generation(self) -> int:
        return int(_HEADER.unpack_from(self._map, 0)[0])

    def new_generation(self) -> int:
        """The parent asks for a reload: the generation every worker must reach."""
        generation = self.generation + 1
        _HEADER.pack_into(self._map, 0, generation)
        return generation

    def serving(self, index: int) -> None:
        """Worker `index` serves the settings of the parent's newest generation."""
        active, finished, failed, sent, _ = self.slot(index)
        self._write(index, active, finished, failed, sent, self.generation)

    def serves(self, index: int, generation: int) -> bool:
        return self.slot(index)[4] >= generation

    # -- the session limit -----------------------------------------------------------
    def gate(self, index: int) -> WorkerGate:
        return WorkerGate(self, index)

    def admit(self, index: int) -> bool:
        fd = self._file.fileno()
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            if self.totals()[0] >= self.max_sessions:
                return False
            active, finished, failed, sent, generation = self.slot(index)
            self._write(index, active + 1, finished, failed, sent, generation)
            return True
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    def done(self, index: int, sent: int | None) -> None:
        # Only worker `index` writes its slot, so no lock: the others only read it.
        active, finished, failed, total, generation = self.slot(index)
        if sent is not None:
            finished += 1
            failed += sent < 0
            total += max(sent, 0)
        self._write(index, max(active - 1, 0), finished, failed, total, generation)

    def close(self) -> None:
        self._map.close()
        self._file.close()


class WorkerGate:
    """The `SessionGate` of one worker: the session limit over all of them."""

    def __init__(self, counters: SharedCounters, index: int) -> None:
        self.counters = counters
        self.index = index

    def acquire(self) -> bool:
        return self.counters.admit(self.index)

    def release(self, sent: int | None) -> None:
        self.counters.done(self.index, sent)
