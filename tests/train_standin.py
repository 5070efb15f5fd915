"""A temporary local stand-in for the engine/loader entry points the training loop calls.

Used by the training tests only while ``liplt_cli.lipschitz.pairwise_bound_tensor`` or
``liplt_cli.load.graph_from_module`` are not in the repository: the naive pairwise bound of a
Flatten/Linear/ReLU MLP, ‖W_L[i] − W_L[j]‖₂ · Π_k ‖W_k‖₂, differentiable in the weights.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn


def engine_available() -> bool:
    try:
        lip = importlib.import_module("liplt_cli.lipschitz")
        load = importlib.import_module("liplt_cli.load")
    except ImportError:
        return False
    return all(hasattr(lip, n) for n in ("pairwise_bound_tensor", "compute_bounds")) and hasattr(
        load, "graph_from_module"
    )


def loader_available() -> bool:
    try:
        load = importlib.import_module("liplt_cli.load")
    except ImportError:
        return False
    return hasattr(load, "load_model") and hasattr(load, "save_safetensors")


class _State:
    def __init__(self) -> None:
        self.steps = torch.zeros((), dtype=torch.long)

    def state_dict(self) -> dict:
        return {"steps": self.steps.clone()}

    def load_state_dict(self, d: dict) -> None:
        self.steps = d["steps"].clone()


def graph_from_module(module: nn.Module, input_shape):  # noqa: ANN001
    return module


def naive_pairwise(module: nn.Module, method: str = "naive", state=None, iterations: int = 1):  # noqa: ANN001
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    inner = torch.ones(())
    for lin in linears[:-1]:
        inner = inner * torch.linalg.matrix_norm(lin.weight, ord=2)
    w = linears[-1].weight
    diff = w[:, None, :] - w[None, :, :]
    pair = diff.norm(dim=-1) * inner
    state = state or _State()
    state.steps = state.steps + 1
    return pair, state


def sound_pairwise(module: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return naive_pairwise(module)[0].double()


def install(monkeypatch) -> None:  # noqa: ANN001
    """Route the loop's engine calls to the stand-in when the real ones are missing."""
    from liplt_cli.train import loop

    if not engine_available():
        monkeypatch.setattr(loop, "_graph_from_module", graph_from_module)
        monkeypatch.setattr(loop, "_pairwise", lambda g, m, s, n, through=False: naive_pairwise(g, m, s, n))
        monkeypatch.setattr(loop, "_sound_pairwise", sound_pairwise)
    if not loader_available():
        from safetensors.torch import save_file

        def _save(module, path, arch, extra):  # noqa: ANN001
            save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path),
                      metadata={"arch": arch, **extra})

        monkeypatch.setattr(loop, "_save_safetensors", _save)
