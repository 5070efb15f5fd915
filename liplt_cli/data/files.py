"""Small file helpers: open a file that may be gzipped, find one of several spellings."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from liplt_cli.errors import DataError


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``, decompressed when it is gzip (detected by its magic, not its name)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"'{path}' is a damaged gzip file: {exc}") from None
    return raw


def find_file(directory: Path, stems: list[str]) -> Path | None:
    """The first of ``stem`` / ``stem.gz`` (for each stem in order) that exists in ``directory``."""
    for stem in stems:
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None
