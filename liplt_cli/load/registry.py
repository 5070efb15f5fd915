"""The converter registry: which handler maps which fx call onto layer-graph nodes.

A handler registers itself where it is defined, with the :func:`converts` decorator, under
every key it handles:

* ``modules``: ``nn.Module`` classes called as fx ``call_module`` (a subclass is handled by its
  nearest registered base class, as :func:`isinstance` would find it);
* ``onnx``: onnx2torch module class names (``"OnnxGemm"``), matched by name only;
* ``functions``: fx ``call_function`` targets (``F.conv2d``, ``operator.add``, ``torch.cat``);
* ``methods``: fx ``call_method`` names (``"view"``, ``"__add__"``).

A key registered twice is a programming error (:class:`DuplicateConverterError`), so two
handlers can never silently compete for one op.  Each registration also carries the label under
which the op appears in the list of supported operators (unsupported-op errors and the README);
:mod:`liplt_cli.load.supported` lists them, so the list cannot drift from what is registered.
Capabilities that no single key names (elementwise formulas) are declared with
:func:`declare_capability`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

__all__ = [
    "Converter", "DuplicateConverterError", "Handler", "REGISTRY", "Registry", "converts",
    "declare_capability",
]

#: A handler: a :class:`~liplt_cli.load.ops.call.Call` → the :class:`~liplt_cli.load.values.Sym` of its result.
Handler = Callable[[Any], Any]


class DuplicateConverterError(ValueError):
    """A second handler was registered for a key that already has one."""


@dataclass(frozen=True)
class Converter:
    """One registered handler: ``labels`` name it in the supported list, ``family`` groups it."""

    handler: Handler
    labels: tuple[str, ...]
    family: str


class Registry:
    """Handlers by key kind (see module docstring)."""

    def __init__(self) -> None:
        self.modules: dict[type, Converter] = {}
        self.onnx: dict[str, Converter] = {}
        self.functions: dict[Any, Converter] = {}
        self.methods: dict[str, Converter] = {}
        self._converters: list[Converter] = []  # in registration order
        self._capabilities: list[tuple[str, str]] = []

    def register(self, conv: Converter, modules: Iterable[type] = (), onnx: Iterable[str] = (),
                 functions: Iterable[Any] = (), methods: Iterable[str] = ()) -> None:
        """Add ``conv`` under every key given; nothing is added when any key is already taken."""
        keyed = [(table, key) for table, keys in ((self.modules, modules), (self.onnx, onnx),
                                                   (self.functions, functions), (self.methods, methods))
                 for key in dict.fromkeys(keys)]  # (one key named twice by one handler is one key)
        for table, key in keyed:
            if key in table:
                taken = table[key]
                raise DuplicateConverterError(
                    f"{_key_name(key)} already converts with {taken.handler.__qualname__} "
                    f"({', '.join(taken.labels)}); refusing {conv.handler.__qualname__}"
                )
        for table, key in keyed:
            table[key] = conv
        self._converters.append(conv)

    def capability(self, label: str, family: str) -> None:
        if (label, family) not in self._capabilities:
            self._capabilities.append((label, family))

    # ------------------------------------------------------------------ lookup
    def for_module(self, mod: Any) -> Converter | None:
        cls = type(mod)
        if cls.__module__.startswith("onnx2torch"):
            return self.onnx.get(cls.__name__)
        for base in cls.__mro__:  # the class itself first, then its nearest registered base
            if base in self.modules:
                return self.modules[base]
        return None

    def for_function(self, fn: Any) -> Converter | None:
        try:
            return self.functions.get(fn)
        except TypeError:  # an unhashable target
            return None

    def for_method(self, name: str) -> Converter | None:
        return self.methods.get(name)

    # ------------------------------------------------------------------ the supported list
    def entries(self) -> list[tuple[str, str]]:
        """``(family, label)`` of every registered handler and capability, in registration order."""
        seen: dict[tuple[str, str], None] = {}
        for conv in self._converters:
            for label in conv.labels:
                seen.setdefault((conv.family, label), None)
        for label, family in self._capabilities:
            seen.setdefault((family, label), None)
        return list(seen)


def _key_name(key: Any) -> str:
    if isinstance(key, str):
        return repr(key)
    module = getattr(key, "__module__", None) or ""
    return f"{module}.{getattr(key, '__qualname__', getattr(key, '__name__', repr(key)))}".lstrip(".")


#: The registry every handler module registers into.
REGISTRY = Registry()


def converts(
    *,
    label: str | tuple[str, ...],
    modules: Iterable[type] = (),
    onnx: Iterable[str] = (),
    functions: Iterable[Any] = (),
    methods: Iterable[str] = (),
    family: str | None = None,
) -> Callable[[Handler], Handler]:
    """Register the decorated handler for every key given (see module docstring).

    ``label`` is what the supported list calls the op (several labels for a handler that serves
    several entries of the list); ``family`` defaults to the last part of the handler's module
    name (``linear``, ``pooling``).
    """

    def register(handler: Handler) -> Handler:
        labels = (label,) if isinstance(label, str) else tuple(label)
        conv = Converter(handler, labels, family or handler.__module__.rsplit(".", 1)[-1])
        REGISTRY.register(conv, modules, onnx, functions, methods)
        return handler

    return register


def declare_capability(label: str, family: str) -> None:
    """List ``label`` as supported although no single key names it (e.g. elementwise formulas)."""
    REGISTRY.capability(label, family)
