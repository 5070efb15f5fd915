"""liplt's architectures by name, in the form the loader takes them.

``load_model(path, arch=architecture("4C3F"))`` reads a plain safetensors ``state_dict`` of a
4C3F network; ``save_safetensors(module, path, arch=architecture("4C3F"))`` takes the input
shape from the architecture (see :class:`liplt_cli.load.architecture.Architecture`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from liplt_cli.train.archs import DEFAULT_INPUT_SHAPES, build_arch

__all__ = ["NamedArchitecture", "architecture"]

MNIST_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class NamedArchitecture:
    """Architecture ``name`` (4C3F, 6C2F, 8C2F, 2C2F, ``mlp:W1,W2,...``, ``prop2-...``), built on demand.

    The name is checked when the architecture is built, not before: a name given with a file
    that needs none is never looked at.
    """

    name: str

    def default_input_shape(self, flat_inputs: int | None = None) -> tuple[int, ...] | None:
        """The dataset's image shape for 4C3F/6C2F/8C2F; else the first dense layer's input width
        (784 inputs: an MNIST image 1×28×28); else 1×28×28 for an MLP."""
        fixed = DEFAULT_INPUT_SHAPES.get(self.name.upper())
        if fixed is not None:
            return fixed
        if flat_inputs is not None:
            return MNIST_SHAPE if flat_inputs == 784 else (int(flat_inputs),)
        return MNIST_SHAPE if self.name.lower().startswith("mlp") else None

    def build(self, input_shape: tuple[int, ...], num_classes: int, activation: str = "relu") -> nn.Module:
        return build_arch(self.name, tuple(input_shape), num_classes, activation)


def architecture(name: str) -> NamedArchitecture:
    """liplt's architecture ``name`` for the loader (see module docstring)."""
    return NamedArchitecture(str(name))
