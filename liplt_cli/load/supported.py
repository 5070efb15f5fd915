"""The list of supported operators, generated from the converter registry.

:func:`supported_ops` is the list shown in unsupported-op errors; :func:`supported_ops_markdown`
is the README's list (section "Models liplt reads"), rewritten by ``scripts/supported_ops.py``
and compared with the README by a test, so neither can drift from the registered handlers.
"""

from __future__ import annotations

import liplt_cli.load.elementwise  # noqa: F401  (declares the elementwise capabilities)
import liplt_cli.load.ops  # noqa: F401  (imports every handler family, which fills the registry)
from liplt_cli.load.registry import REGISTRY

__all__ = ["FAMILY_TITLES", "supported_ops", "supported_ops_markdown"]

#: Headings of the op families in the README list, in the order shown.
FAMILY_TITLES = {
    "linear": "Linear layers",
    "pooling": "Pooling",
    "shape": "Shape and identity ops",
    "arithmetic": "Arithmetic",
    "activations": "Activations",
}


def supported_ops() -> list[str]:
    """Every registered label, once (the list in unsupported-op errors)."""
    return list(dict.fromkeys(label for _, label in REGISTRY.entries()))


def supported_ops_markdown() -> str:
    """The README's list: one bullet per family (``**Family**: label, label, ...``)."""
    by_family: dict[str, list[str]] = {}
    for family, label in REGISTRY.entries():
        by_family.setdefault(family, []).append(label)
    order = list(FAMILY_TITLES) + sorted(set(by_family) - set(FAMILY_TITLES))
    lines = [f"- **{FAMILY_TITLES.get(f, f)}**: {', '.join(by_family[f])}." for f in order if f in by_family]
    return "\n".join(lines) + "\n"
