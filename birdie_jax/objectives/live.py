"""A probability vector that the training loop rewrites while data workers keep reading it.

In the process that built it, :class:`LiveVector` is an ordinary array replaced on
:meth:`set`. When it is pickled (Grain's ``mp_prefetch`` pickles the pipeline into
each worker) it moves, once, into a small file in shared memory (``/dev/shm`` where
available): the owner keeps writing there and each worker maps the file read-only and
reads the current values on every :meth:`get`. A version counter written before and
after the values (a sequence lock) keeps a reader from seeing a half-written vector.
The file is removed when the owner is garbage collected.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
import weakref

import numpy as np

_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class LiveVector:
    """float64 [n] values with a version number that grows on every :meth:`set`."""

    def __init__(self, values: np.ndarray):
        self._values = np.array(values, dtype=np.float64)
        self._values.setflags(write=False)
        self._version = 0
        self._owner = True
        self._path: str | None = None
        self._map: np.memmap | None = None  # [version, values...] once shared

    def __len__(self) -> int:
        return int(self._values.shape[0]) if self._owner else int(self._map.shape[0]) - 1

    def get(self) -> tuple[int, np.ndarray]:
        """(version, values [n], read-only): the latest values, in any process."""
        if self._owner:
            return self._version, self._values
        for attempt in range(100_000):
            v1 = float(self._map[0])
            if int(v1) % 2 == 0:
                version = int(v1) // 2
                if version == self._version:
                    return self._version, self._values
                values = np.array(self._map[1:])
                if float(self._map[0]) == v1:
                    values.setflags(write=False)
                    self._version, self._values = version, values
                    return self._version, self._values
            if attempt > 100:
                time.sleep(1e-5)
        raise RuntimeError(f"could not read the shared probability vector {self._path}")

    def set(self, values: np.ndarray) -> None:
        """Replaces the values (owner process only); workers see them at their next get()."""
        if not self._owner:
            raise RuntimeError("mixture probabilities can only be set in the process that built the mixture "
                               "(not in a data worker)")
        values = np.array(values, dtype=np.float64)
        values.setflags(write=False)
        self._values = values
        self._version += 1
        if self._map is not None:
            self._map[0] = 2 * self._version - 1  # odd: write in progress
            self._map[1:] = values
            self._map[0] = 2 * self._version
            self._map.flush()

    def _share(self) -> None:
        fd, path = tempfile.mkstemp(prefix="birdie_probs_", suffix=".f64", dir=_SHM_DIR)
        os.close(fd)
        weakref.finalize(self, _remove, path)
        self._map = np.memmap(path, dtype=np.float64, mode="w+", shape=(self._values.shape[0] + 1,))
        self._map[0] = 2 * self._version
        self._map[1:] = self._values
        self._map.flush()
        self._path = path

    def __getstate__(self) -> dict:
        if self._owner and self._map is None:
            self._share()
        return {"path": self._path, "n": len(self)}

    def __setstate__(self, state: dict) -> None:
        self._owner, self._path = False, state["path"]
        self._map = np.memmap(self._path, dtype=np.float64, mode="r", shape=(state["n"] + 1,))
        self._version, self._values = -1, np.zeros(state["n"])

    def __deepcopy__(self, memo) -> LiveVector:
        """An independent, unshared copy holding the current values."""
        return LiveVector(copy.copy(self.get()[1]))
