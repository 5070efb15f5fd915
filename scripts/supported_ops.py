"""Rewrite the README's list of supported operators from the loader's converter registry.

Usage::

    python scripts/supported_ops.py           # rewrite README.md in place
    python scripts/supported_ops.py --check   # exit 1 when README.md is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from liplt_cli.load.supported import readme_with_supported_ops  # noqa: E402


def main(argv: list[str]) -> int:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    updated = readme_with_supported_ops(text)
    if "--check" in argv:
        if updated != text:
            print("README.md's supported-ops list is out of date; run python scripts/supported_ops.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
