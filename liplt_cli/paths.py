"""Checks on the files liplt reads and writes, made before any computation.

* Inputs are read only from regular files: a FIFO would block forever, a device like
  ``/dev/zero`` never ends, a directory is not a file.  :func:`read_regular_file` checks the type
  with ``stat`` before opening, opens without blocking, checks again on the open descriptor (the
  path cannot be swapped in between) and compares the size with the memory budget before reading.
* Outputs are probed up front (:func:`check_output_file`, :func:`check_output_dir`): the folder
  must exist (or be creatable), and a file must be creatable in it, so that a bad path fails in
  a second instead of after the whole computation.  The probe leaves nothing behind.

Every problem raises the :class:`~liplt_cli.errors.LipltError` subclass the caller names, with
a one-line message naming the path and the rule.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from liplt_cli.errors import ArgumentError, LipltError
from liplt_cli.limits import format_bytes, over_budget


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISREG, "a regular file"),
)


def file_kind(mode: int) -> str:
    """A short name of the file type in ``st_mode``: "a directory", "a FIFO (named pipe)", ..."""
    return next((name for is_kind, name in _FILE_KINDS if is_kind(mode)), "not a regular file")


def require_regular_file(path: Path, what: str, error: type[LipltError] = ArgumentError) -> os.stat_result:
    """``os.stat`` of ``path`` when it is an existing regular file (symlinks followed), else ``error``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} '{path}' does not exist") from None
    except OSError as exc:
        raise error(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} '{path}' is {file_kind(st.st_mode)}, not a regular file")
    return st


def read_regular_file(path: Path, what: str, error: type[LipltError] = ArgumentError) -> bytes:
    """The bytes of the regular file ``path``; ``error`` for anything else or a size over budget."""
    require_regular_file(path, what, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise error(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between the two checks
            raise error(f"{what} '{path}' is {file_kind(st.st_mode)}, not a regular file")
        reason = over_budget(st.st_size, f"reading {what} '{path}' ({format_bytes(st.st_size)})")
        if reason:
            raise error(reason)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 24)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _probe_folder(folder: Path, action: str) -> None:
    """Create and remove a temporary file in ``folder``; ``ArgumentError`` (starting with ``action``) when that fails."""
    try:
        fd, name = tempfile.mkstemp(prefix=".liplt-write-probe-", dir=folder)
    except OSError as exc:
        raise ArgumentError(f"{action}: the folder '{folder}' does not accept new files ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)


def check_output_file(path: Path, what: str) -> Path:
    """Check that ``path`` can be written as a file (its folder exists and accepts a new file).

    An existing ``path`` must be a regular file (it will be replaced) or the null device.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # the folder checks below say why
        st = None
    except OSError as exc:
        raise ArgumentError(f"cannot write {what} '{path}': {exc.strerror or exc}") from None
    if st is not None and not stat.S_ISREG(st.st_mode) and str(path) != os.devnull:
        raise ArgumentError(f"cannot write {what} '{path}': it is {file_kind(st.st_mode)}")
    folder = path.parent
    if not folder.exists():
        raise ArgumentError(f"cannot write {what} '{path}': directory '{folder}' does not exist")
    if not folder.is_dir():
        raise ArgumentError(f"cannot write {what} '{path}': '{folder}' is not a directory")
    if str(path) == os.devnull:
        return path
    if st is not None:
        try:
            with open(path, "ab"):  # opening for append neither truncates nor changes the file
                pass
        except OSError as exc:
            raise ArgumentError(f"cannot write {what} '{path}': {exc.strerror or exc}") from None
    else:
        _probe_folder(folder, f"cannot write {what} '{path}'")
    return path


def check_output_dir(path: Path, what: str) -> Path:
    """Check that ``path`` is, or can be created as, a folder that accepts new files (nothing is created)."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ArgumentError(f"{what} '{path}' exists and is not a directory")
        _probe_folder(path, f"cannot write into {what} '{path}'")
        return path
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ArgumentError(f"cannot create {what} '{path}': '{ancestor}' is not a directory")
    _probe_folder(ancestor, f"cannot create {what} '{path}'")
    return path


def with_suffix_checked(path: Path, what: str, allowed: tuple[str, ...], default: str) -> Path:
    """``path`` with ``default`` appended when it has no suffix; ``ArgumentError`` for another suffix.

    ``allowed`` and ``default`` are lower-case suffixes with the dot (``".png"``).
    """
    path = Path(path)
    if not path.suffix:
        return path.with_name(path.name + default)
    if path.suffix.lower() not in allowed:
        raise ArgumentError(
            f"{what} must name a {'/'.join(s.lstrip('.').upper() for s in allowed)} file, got '{path}' "
            f"(unsupported suffix '{path.suffix}')"
        )
    return path
