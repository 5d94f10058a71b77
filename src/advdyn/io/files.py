"""Atomic file writes: a reader never sees a half-written result."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK_LOCK = threading.Lock()
_PENDING_LOCK = threading.Lock()
#: temporary files not yet put in place, and folders a running lock created: what
#: `abandon` removes when the process is ended at once (Ctrl-C on the command line)
_PENDING: set[Path] = set()
_CREATED: set[Path] = set()


def abandon() -> None:
    """Remove this process's unfinished writes: its temporary files not yet put in place,
    and the folders its [`folder_lock`][advdyn.io.files.folder_lock] created in which nothing else
    was written.

    For a process about to end without unwinding (`os._exit` after Ctrl-C,
    `advdyn.cli.interrupted`): the finished result files stay as they were, so a
    previous result set is never mixed with part of a new one beyond what was complete.
    """
    # a signal handler runs in the main thread between two bytecodes, possibly while that
    # thread holds the lock (registering a file): wait briefly, then go on without it (the
    # process ends right after, so the sets are only read)
    held = _PENDING_LOCK.acquire(timeout=0.5)
    try:
        for tmp in list(_PENDING):
            tmp.unlink(missing_ok=True)
        for folder in list(_CREATED):
            try:
                if [p.name for p in folder.iterdir()] == [".advdyn.lock"]:
                    (folder / ".advdyn.lock").unlink(missing_ok=True)
                    folder.rmdir()
            except OSError:
                pass
        _PENDING.clear()
        _CREATED.clear()
    finally:
        if held:
            _PENDING_LOCK.release()


def _umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    A reader never sees a half-written file, and a failed or interrupted write leaves any
    previous file in place (the temporary file is removed). Missing parent folders are
    created. The file gets the mode a plain ``open(path, "w")`` would give it
    (``0o666`` less the umask), not the ``0o600`` of a temporary file.

    Parameters
    ----------
    path : str or Path
        Final destination.
    suffix : str
        Suffix of the temporary file (some writers choose their format by it).

    Yields
    ------
    Path
        Where to write.
    """
    tmp = temporary_path(path, suffix)
    try:
        yield tmp
        put_in_place(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        with _PENDING_LOCK:
            _PENDING.discard(tmp)
        raise


def temporary_path(path: str | Path, suffix: str = ".tmp") -> Path:
    """Create a fresh, empty temporary file beside ``path`` (named ``.<name>.*<suffix>``).

    The caller writes it and then [`put_in_place`][advdyn.io.files.put_in_place] it, or removes it.
    Missing parent
    folders are created. [`atomic_path`][advdyn.io.files.atomic_path] is the two steps in one block;
    these are for
    a write that another process does.

    Parameters
    ----------
    path : str or Path
        Final destination.
    suffix : str
        Suffix of the temporary file.

    Returns
    -------
    Path
        The temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    with _PENDING_LOCK:
        _PENDING.add(Path(tmp))
    return Path(tmp)


def put_in_place(tmp: str | Path, path: str | Path) -> Path:
    """Give a written temporary file the mode of a plain ``open(path, "w")`` (``0o666`` less
    the umask) and rename it onto ``path`` (atomic on one file system).

    Parameters
    ----------
    tmp : str or Path
        The written file (from [`temporary_path`][advdyn.io.files.temporary_path]).
    path : str or Path
        Final destination.

    Returns
    -------
    Path
        ``path``.
    """
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
    with _PENDING_LOCK:
        _PENDING.discard(Path(tmp))
    return Path(path)


def write_json(data: object, path: str | Path) -> Path:
    """Write JSON atomically (same rule as [`write_netcdf`][advdyn.io.write_netcdf]).

    Parameters
    ----------
    data : object
        JSON-serialisable data, written indented with sorted keys.
    path : str or Path
        Destination file.

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return Path(path)


@contextmanager
def folder_lock(folder: str | Path, what: str = "advdyn") -> Iterator[Path]:
    """Hold an exclusive lock on a result folder while the block runs.

    The lock is ``folder/.advdyn.lock`` locked with ``fcntl.flock``: the operating system
    releases it when the process ends, even by ``SIGKILL``, so a killed run never leaves
    a stale lock behind. The folder is created if missing, and removed again when the
    block fails before anything was written into it.

    Parameters
    ----------
    folder : str or Path
        The result folder.
    what : str
        What holds the lock (``"advdyn run"``, ``"advdyn sweep"``), for the message of a
        second process.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    ConfigError
        Field ``out``: if ``folder`` is empty or names an existing file, cannot be created
        or written (read-only, full), or another process holds the lock (its process id and
        command are named). All of it is checked before the block runs, so that a command
        holding the lock around its computation refuses a bad folder before computing.
    """
    import fcntl

    from advdyn.checks import output_folder
    from advdyn.errors import ConfigError

    folder = output_folder(folder, "out")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = folder / ".advdyn.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise ConfigError("out", f"cannot write results to {folder}: "
                          f"{err.strerror or err}; choose another --out") from None
    failed = False
    if created:
        with _PENDING_LOCK:
            _CREATED.add(folder)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise ConfigError(
                "out", f"{folder} is in use by {holder}; wait for it to finish or choose "
                "another --out"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{what} (pid {os.getpid()})\n".encode(), 0)
            probe_fd, probe = tempfile.mkstemp(prefix=".advdyn.probe.", dir=folder)
            os.close(probe_fd)  # results can be created here
            os.unlink(probe)
        except OSError as err:  # a read-only folder or file system, a full disk, ...
            raise ConfigError("out", f"cannot write results to {folder}: "
                              f"{err.strerror or err}; choose another --out") from None
        yield lock
    except BaseException:
        failed = True
        raise
    finally:
        if failed and created and [p.name for p in folder.iterdir()] == [lock.name]:
            lock.unlink(missing_ok=True)  # a run that failed before writing leaves no folder
            folder.rmdir()
        with _PENDING_LOCK:
            _CREATED.discard(folder)
        os.close(fd)  # releases the lock
