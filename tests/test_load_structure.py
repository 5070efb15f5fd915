"""The loader's structure: one converter registry, imports that only point one way, no import of
the training package, the supported-op list generated from the registry (README included)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from liplt_cli.errors import UnsupportedOpError
from liplt_cli.load import graph_from_module
from liplt_cli.load.registry import REGISTRY, Converter, DuplicateConverterError, Registry, converts
from liplt_cli.load.supported import readme_with_supported_ops, supported_ops

ROOT = Path(__file__).resolve().parents[1]


def tripled(x):
    """A new operator for the registry test (traced as one call, not through its body)."""
    return 3.0 * x


torch.fx.wrap("tripled")
LOAD = ROOT / "liplt_cli" / "load"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


LOAD_MODULES = {_module_name(p): p for p in sorted(LOAD.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # ``from package import submodule`` imports the submodule
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in LOAD_MODULES else base)
    return found


def _load_graph() -> dict[str, set[str]]:
    return {name: {m for m in _imports(path) if m in LOAD_MODULES and m != name} for name, path in LOAD_MODULES.items()}


def test_no_import_cycle_between_loader_modules():
    graph = _load_graph()
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail + [name, target]))
            if state.get(target) is None:
                visit(target, trail + [name])
        state[name] = 2

    for name in sorted(graph):
        if state.get(name) is None:
            visit(name, [])


def test_no_loader_module_imports_the_package_entry_points():
    """The entry points (``liplt_cli/load/__init__.py``) sit on top: no submodule imports from them."""
    offenders = [name for name, targets in _load_graph().items() if "liplt_cli.load" in targets]
    assert offenders == []


def test_no_loader_module_imports_the_training_package():
    offenders = {name: sorted(m for m in _imports(path) if m.startswith("liplt_cli.train"))
                 for name, path in LOAD_MODULES.items()}
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.slow
def test_each_loader_module_imports_first_in_a_fresh_interpreter():
    """Imported first (with every liplt module unloaded before each), no module trips over an import
    order (slow: about 20 s; the import graph itself is checked by the test above)."""
    script = (
        "import importlib, sys\n"
        f"names = {sorted(LOAD_MODULES)!r}\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'liplt_cli' or m.startswith('liplt_cli.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('ok', len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"ok {len(LOAD_MODULES)}"


# ---------------------------------------------------------------------- the registry
def test_a_second_registration_for_a_key_is_refused_and_adds_nothing():
    registry = Registry()

    def first(c):
        return c

    def second(c):
        return c

    registry.register(Converter(first, ("First",), "test"), modules=(nn.ReLU,), methods=("relu",))
    with pytest.raises(DuplicateConverterError, match="ReLU"):
        registry.register(Converter(second, ("Second",), "test"), methods=("tanh",), modules=(nn.ReLU,))
    assert registry.for_module(nn.ReLU()).handler is first
    assert registry.for_method("tanh") is None
    assert [label for _, label in registry.entries()] == ["First"]


def test_the_shared_registry_refuses_a_second_handler_for_a_registered_op():
    with pytest.raises(DuplicateConverterError, match="Conv2d"):
        converts(label="another conv", modules=(nn.Conv2d,))(lambda c: c)
    assert "another conv" not in supported_ops()


def test_a_new_operator_is_one_registered_handler(monkeypatch):
    from liplt_cli.load.ops.arithmetic import affine

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(tripled(self.a(x)))

    with pytest.raises(UnsupportedOpError, match="tripled"):
        graph_from_module(Model(), (3,))
    monkeypatch.setattr(REGISTRY, "functions", dict(REGISTRY.functions))
    monkeypatch.setattr(REGISTRY, "_converters", list(REGISTRY._converters))

    @converts(label="tripled", functions=(tripled,))
    def h_tripled(c):
        return affine(c, c.src, torch.tensor(3.0), None, "triple")

    graph = graph_from_module(Model(), (3,))  # (checked against the module as it loads)
    assert [n.op.label for n in graph.nodes if hasattr(n, "op") and hasattr(n.op, "label")] == ["triple"]
    assert "tripled" in supported_ops()


def test_a_subclass_is_converted_by_its_nearest_registered_base():
    class MyReLU6(nn.ReLU6):
        pass

    assert REGISTRY.for_module(MyReLU6()) is REGISTRY.modules[nn.ReLU6]
    assert REGISTRY.for_module(nn.ReLU6()) is not REGISTRY.modules[nn.Hardtanh]


def test_every_handler_lives_in_the_family_module_it_is_filed_under():
    for table in (REGISTRY.modules, REGISTRY.onnx, REGISTRY.functions, REGISTRY.methods):
        for conv in table.values():
            assert conv.handler.__module__ == f"liplt_cli.load.ops.{conv.family}", conv


def test_the_unsupported_op_error_lists_the_registry():
    class Exp(nn.Module):
        def forward(self, x):
            return torch.exp(x) @ torch.ones(3, 2)

    with pytest.raises(UnsupportedOpError) as info:
        graph_from_module(Exp(), (3,))
    assert info.value.supported == sorted(supported_ops())
    for label in ("Conv1d/2d/3d", "MaxPool", "ReLU", "Concat", "Add/Sub of two tensors"):
        assert label in info.value.supported


def test_the_readme_list_is_the_registry():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_with_supported_ops(readme) == readme, (
        "README.md's list of supported operators differs from the converter registry; "
        "run python scripts/supported_ops.py"
    )
    for label in supported_ops():
        assert label in readme
