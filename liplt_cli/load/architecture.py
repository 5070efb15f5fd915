"""What the loader needs of a named architecture, given by the caller.

A plain safetensors file (a bare ``state_dict``) has no architecture: the caller names one, and
the loader builds it, loads the weights strictly and traces it.  The loader knows no
architecture itself (it does not depend on the training package): liplt's own (4C3F, 6C2F,
8C2F, ``mlp:…``, ``prop2-…``) come from :func:`liplt_cli.train.architecture.architecture`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn

__all__ = ["Architecture"]


@runtime_checkable
class Architecture(Protocol):
    """A named architecture the loader can build (see module docstring)."""

    @property
    def name(self) -> str:
        """The architecture's name, kept in the file's metadata and in messages."""
        ...

    def default_input_shape(self, flat_inputs: int | None = None) -> tuple[int, ...] | None:
        """The per-sample input shape when the caller gives none (``None``: unknown).

        ``flat_inputs`` is the input width of the first dense layer of the weights, when known.
        """
        ...

    def build(self, input_shape: tuple[int, ...], num_classes: int, activation: str = "relu") -> nn.Module:
        """A freshly initialised module for ``input_shape`` and ``num_classes``."""
        ...
