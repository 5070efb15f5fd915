"""Small file helpers: open a file that may be gzipped, find one of several spellings."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

from liplt_cli.errors import DataError
from liplt_cli.limits import BUDGET_ENV, format_bytes, memory_budget


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when it is gzip (detected by its magic, not its name).

    Only a regular file is read (a FIFO would block), and neither the file nor its decompressed
    content may exceed the memory budget (a gzip bomb is refused once it passes the budget).
    """
    from liplt_cli.paths import read_regular_file

    raw = read_regular_file(path, "data file", DataError)
    if raw[:2] == b"\x1f\x8b":
        limit = memory_budget()
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as fh:
                data = fh.read(limit + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"'{path}' is a damaged gzip file: {exc}") from None
        if len(data) > limit:
            raise DataError(f"'{path}' decompresses to more than liplt's memory budget of {format_bytes(limit)} "
                            f"(set ${BUDGET_ENV} to change it)")
        return data
    return raw


def find_file(directory: Path, stems: list[str]) -> Path | None:
    """The first of ``stem`` / ``stem.gz`` (for each stem in order) that exists in ``directory``."""
    for stem in stems:
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None
