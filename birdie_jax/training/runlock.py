"""One writer per run folder: ``<run_dir>/.lock``, held for the whole run.

The lock is an exclusive ``flock`` on the file, which the kernel drops when the holding
process dies (killed, crashed, preempted), so a lock left by a dead process is stale by
construction and the next run takes it over. The file holds the holder's PID, host and
start time, to name it in the error. On a filesystem without ``flock`` the PID and host
are the lock: a holder on this host whose PID is gone is stale.
"""

import errno
import fcntl
import json
import os
import socket
import time

from birdie_jax.errors import BirdieError

LOCK_NAME = ".lock"


class RunLock:
    """``with RunLock(run_dir):`` or ``acquire()``/``release()``; creates ``run_dir``."""

    def __init__(self, run_dir: str):
        self.run_dir = os.path.abspath(run_dir)
        self.path = os.path.join(self.run_dir, LOCK_NAME)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Takes the lock, or raises :class:`BirdieError` naming the process that holds it."""
        os.makedirs(self.run_dir, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._locked_error(_read_holder(self.path)) from None
            except OSError as e:  # no flock here: fall back to PID + host
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(fd)
                    raise
                holder = _read_holder(self.path)
                if holder and _alive(holder) and holder.get("pid") != os.getpid():
                    os.close(fd)
                    raise self._locked_error(holder) from None
            try:  # a releasing holder may have unlinked the file between our open and flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Removes the lock file and drops the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def _locked_error(self, holder: dict) -> BirdieError:
        who = (f"process {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')})"
               if holder else "another process")
        return BirdieError(f"run folder {self.run_dir} is locked by {who}; wait for that run to end or "
                           "choose another train.run_dir")

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(holder: dict) -> bool:
    """Whether the holder may still run: another host cannot be checked, so it counts as alive."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except (ProcessLookupError, KeyError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True
