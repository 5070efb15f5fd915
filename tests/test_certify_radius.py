"""Certified radii (eq. 4): agreement with a direct per-sample computation, edge cases, accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from tests.certify_nets import dense_pairwise, mlp_graph, tiny_trained_mlp
from liplt_cli.certify import PairwiseConstants, certified_accuracy, certified_radii, radii_from_logits
from liplt_cli.certify.radius import match_inputs
from liplt_cli.errors import DataError, InputShapeError
from liplt_cli.lipschitz.result import Guarantee


def _loop_radius(z: list[float], y: int, L: list[list[float]]) -> float:
    if any(z[i] >= z[y] for i in range(len(z)) if i != y):
        return 0.0
    return min(((z[y] - z[i]) / L[y][i] if L[y][i] > 0 else math.inf) for i in range(len(z)) if i != y)


@pytest.mark.parametrize("p", [2.0, math.inf, 1.0])
def test_radii_equal_direct_loop_on_small_nets(p: float) -> None:
    gen = torch.Generator().manual_seed(1)
    w = [torch.randn(16, 12, generator=gen) / 3, torch.randn(9, 16, generator=gen) / 3, torch.randn(5, 9, generator=gen)]
    b = [torch.randn(16, generator=gen) * 0.1, torch.randn(9, generator=gen) * 0.1, torch.randn(5, generator=gen)]
    graph = mlp_graph(w, b, input_shape=(12,), activation="tanh")
    consts = dense_pairwise(w, p)
    x = torch.rand(40, 12, generator=gen)
    z = graph.evaluate(x)
    y = torch.randint(0, 5, (40,), generator=gen)
    y[::2] = z[::2].argmax(dim=1)  # half correctly classified
    out = certified_radii(graph, x, y, consts, batch_size=7)
    L = consts.matrix.tolist()
    want = [_loop_radius(z[n].double().tolist(), int(y[n]), L) for n in range(40)]
    assert torch.allclose(out.radius, torch.tensor(want, dtype=torch.float64), rtol=1e-5, atol=1e-9)  # float32 logits, batching
    assert torch.equal(out.prediction, z.argmax(dim=1))
    assert (out.radius[out.prediction != y] == 0).all() and (out.radius[out.prediction == y] > 0).all()
    # the dense constant of a margin row: ‖(e_i−e_j)ᵀW3‖_{p*}·‖W2‖·‖W1‖ (tanh is 1-Lipschitz)
    dual = {2.0: 2, math.inf: 1, 1.0: math.inf}[p]
    norm = {2.0: lambda m: torch.linalg.matrix_norm(m.double(), 2), math.inf: lambda m: m.double().abs().sum(1).max(),
            1.0: lambda m: m.double().abs().sum(0).max()}[p]
    direct = torch.linalg.vector_norm((w[2][1] - w[2][3]).double(), ord=dual) * norm(w[1]) * norm(w[0])
    assert float(consts.matrix[1, 3]) == pytest.approx(float(direct), rel=1e-5)


def test_radius_edge_cases() -> None:
    L = torch.tensor([[0.0, 2.0, 0.0], [2.0, 0.0, 4.0], [0.0, 4.0, 0.0]])
    logits = torch.tensor([[3.0, 1.0, 2.0],   # margins 2 (L=2 → 1), 1 (L=0 → never flips) → 1
                           [1.0, 1.0, 0.0],   # tie with the label → 0
                           [0.0, 1.0, 3.0],   # label 2: margin 2 vs class 1 with L 4 → 0.5; class 0 L=0 → inf
                           [5.0, 1.0, 4.0]])  # only L=0 pair limits? class 1: 4/2=2, class 2: 1/0 → 2
    y = torch.tensor([0, 0, 2, 0])
    r = radii_from_logits(logits, y, L)
    assert r.tolist() == [1.0, 0.0, 0.5, 2.0]
    L2 = torch.zeros(2, 2)
    assert radii_from_logits(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), L2).tolist() == [math.inf]
    assert certified_accuracy(torch.tensor([0.0, 0.5, 1.0, math.inf]), [0.0, 0.5, 2.0]) == [0.75, 0.5, 0.25]


def test_constants_validation() -> None:
    with pytest.raises(ValueError, match="K×K"):
        PairwiseConstants(torch.ones(2, 3), Guarantee.EXACT, 2.0)
    with pytest.raises(ValueError, match="non-negative"):
        PairwiseConstants(torch.tensor([[0.0, -1.0], [-1.0, 0.0]]), Guarantee.EXACT, 2.0)
    c = PairwiseConstants([[0.0, 1.0], [3.0, 0.0]], "estimate", math.inf)
    assert c.guarantee is Guarantee.ESTIMATE and not c.sound and c.mean_off_diagonal == 2.0


def test_input_matching_and_label_checks() -> None:
    x = torch.rand(3, 1, 28, 28)
    assert match_inputs(x, (784,)).shape == (3, 784)
    assert match_inputs(x, (1, 784)).shape == (3, 1, 784)
    assert match_inputs(x, (28, 28)).shape == (3, 28, 28)
    with pytest.raises(InputShapeError, match=r"\[784\] \(784 values\).*\[3, 32, 32\] \(3072 values\)"):
        match_inputs(torch.rand(2, 3, 32, 32), (784,))
    with pytest.raises(InputShapeError, match="shape"):
        match_inputs(torch.rand(2, 2, 392), (4, 196))  # same count, another layout
    graph, w, xt, yt = tiny_trained_mlp()
    with pytest.raises(DataError, match=r"range over 0…12 but the model has 10 outputs"):
        certified_radii(graph, xt[:3], torch.tensor([0, 12, 3]), dense_pairwise(w, 2.0))
    with pytest.raises(DataError, match="empty"):
        certified_radii(graph, xt[:0], yt[:0], dense_pairwise(w, 2.0))


def test_trained_mlp_has_positive_radii_and_progress() -> None:
    graph, w, xt, yt = tiny_trained_mlp()
    calls = []
    out = certified_radii(graph, xt, yt, dense_pairwise(w, 2.0), batch_size=64, progress=lambda d, t: calls.append((d, t)))
    acc = int((out.prediction == yt).sum()) / len(yt)
    assert acc > 0.7
    assert calls[-1] == (len(yt), len(yt)) and len(calls) == math.ceil(len(yt) / 64)
    assert float(out.radius.max()) > 0
    curve = certified_accuracy(out.radius, [0.0, 0.05, 0.1, 0.3])
    assert curve == sorted(curve, reverse=True) and curve[0] <= acc
