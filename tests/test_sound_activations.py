"""Soundness against crafted elementwise composites: a refusal, or a bound above the Jacobian.

Each case is an ONNX file built here with ``onnx.helper``: ``input → Gemm → φ → Gemm`` where
``φ`` is a composite of elementwise ONNX ops.  liplt must either refuse it (exit 2, one line on
stderr naming a node of ``φ``) or report bounds that are at least the norm of the model's true
Jacobian ``W₂ diag(φ'(h)) W₁``, measured (with autograd on an independent torch copy of ``φ``,
itself checked against onnx's reference evaluator) at inputs where the crafted part is active.
Then: every recognised pattern maps to the right activation with exact constants, and patterns
with a wrong constant are not accepted.
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from liplt_cli.cli.app import run
from liplt_cli.errors import UnsupportedOpError
from liplt_cli.graph import ActivationNode
from liplt_cli.graph.slopes import slope_range
from liplt_cli.load import load_model

pytestmark = pytest.mark.usefixtures("single_thread")

N_IN, N_HID, N_OUT = 4, 4, 3
_RNG = np.random.default_rng(7)
W1 = _RNG.normal(size=(N_HID, N_IN))
W2 = _RNG.normal(size=(N_OUT, N_HID))
B2 = _RNG.normal(size=N_OUT)


def _f(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


class Composite:
    """``φ`` as ONNX nodes reading ``h`` and writing ``phi``, with constants, and a torch copy."""

    def __init__(self, nodes, consts, torch_fn):
        self.nodes = nodes
        self.consts = consts
        self.torch_fn = torch_fn


def N(op, inputs, output, **attrs):
    return helper.make_node(op, inputs, [output], name=f"phi_{output}", **attrs)


def _model(comp: Composite, opset: int = 13):
    nodes = [helper.make_node("Gemm", ["input", "w1"], ["h"], transB=1, name="fc1"), *comp.nodes,
             helper.make_node("Gemm", ["phi", "w2", "b2"], ["output"], transB=1, name="fc2")]
    inits = [_f("w1", W1), _f("w2", W2), _f("b2", B2)] + [_f(k, v) for k, v in comp.consts.items()]
    graph = helper.make_graph(nodes, "crafted", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, N_IN])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, N_OUT])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def _save(tmp_path, comp, name="crafted.onnx"):
    model = _model(comp)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path, model


def _reference_check(model, comp, hs):
    """The torch copy of φ is the ONNX model's φ (onnx's own reference evaluator)."""
    w1 = torch.tensor(W1, dtype=torch.float32)
    x = torch.linalg.solve(w1, hs.T).T  # inputs with fc1(x) = h
    sess = ReferenceEvaluator(model)
    ref = np.concatenate([sess.run(None, {"input": xi[None].numpy()})[0] for xi in x])
    mine = (comp.torch_fn(x.double() @ torch.tensor(W1).T) @ torch.tensor(W2).T + torch.tensor(B2)).numpy()
    np.testing.assert_allclose(ref, mine, rtol=1e-4, atol=1e-3 * (1 + np.abs(mine).max()))


def _jacobian_norms(comp, hs) -> dict[str, float]:
    """max over the given pre-activations h of ‖W₂ diag(φ'(h)) W₁‖ in ℓ2, ℓ∞, ℓ1."""
    h = hs.double().clone().requires_grad_(True)
    (d,) = torch.autograd.grad(comp.torch_fn(h).sum(), h)
    best = {"2": 0.0, "inf": 0.0, "1": 0.0}
    for row in d:
        j = torch.tensor(W2) @ torch.diag(row) @ torch.tensor(W1)
        best["2"] = max(best["2"], float(torch.linalg.matrix_norm(j, 2)))
        best["inf"] = max(best["inf"], float(j.abs().sum(1).max()))
        best["1"] = max(best["1"], float(j.abs().sum(0).max()))
    return best


def _bound(capsys, path, norm):
    code = run(["bound", str(path), "--norm", norm, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    methods = json.loads(out.out)["methods"]
    return {name: m["global"] for name, m in methods.items()}


def _refused(capsys, path, node_names):
    code = run(["bound", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert any(f"'{n}'" in err for n in node_names), err
    return err


def _active(values_per_neuron) -> torch.Tensor:
    """Pre-activation vectors: every neuron at each given value, and mixed ones."""
    vals = torch.tensor(values_per_neuron, dtype=torch.float64)
    rows = [torch.full((N_HID,), float(v), dtype=torch.float64) for v in vals]
    gen = torch.Generator().manual_seed(0)
    for _ in range(16):
        rows.append(vals[torch.randint(0, len(vals), (N_HID,), generator=gen)])
    return torch.stack(rows)


# ---------------------------------------------------------------------- the crafted cases
def issue_switch():
    """The issue's example: Where(h > 50, 1000·h − 49950, Relu(h)) (continuous at 50)."""
    nodes = [N("Relu", ["h"], "r"), N("Greater", ["h", "c50"], "g"), N("Mul", ["h", "c1000"], "m"),
             N("Sub", ["m", "c49950"], "s"), N("Where", ["g", "s", "r"], "phi")]
    fn = lambda h: torch.where(h > 50, 1000 * h - 49950, torch.relu(h))  # noqa: E731
    return Composite(nodes, {"c50": 50.0, "c1000": 1000.0, "c49950": 49950.0}, fn), [60.0, 80.0, 5.0, -3.0]


def far_switch():
    """A switch far outside any sampling grid: slope 1.5 above h = 10⁴, continuous there."""
    nodes = [N("Greater", ["h", "t"], "g"), N("Mul", ["h", "k"], "m"), N("Sub", ["m", "off"], "s"),
             N("Where", ["g", "s", "h"], "phi")]
    fn = lambda h: torch.where(h > 1e4, 1.5 * h - 5000, h)  # noqa: E731
    return Composite(nodes, {"t": 1e4, "k": 1.5, "off": 5000.0}, fn), [2e4, 3e4, 1.0]


def max_of_lines():
    """Max(h, 3h − 100): a continuous kink at h = 50 with slope 3 above it."""
    nodes = [N("Mul", ["h", "three"], "m"), N("Sub", ["m", "hundred"], "s"), N("Max", ["h", "s"], "phi")]
    fn = lambda h: torch.maximum(h, 3 * h - 100)  # noqa: E731
    return Composite(nodes, {"three": 3.0, "hundred": 100.0}, fn), [60.0, 90.0, 0.0]


def tanh_plus_where():
    """Where(h < −30, 2·tanh(h) + h·0 …) written as branches meeting continuously at −30."""
    nodes = [N("Less", ["h", "t"], "g"), N("Mul", ["h", "k"], "m"), N("Add", ["m", "off"], "s"),
             N("Tanh", ["h"], "th"), N("Add", ["th", "h"], "a"), N("Where", ["g", "s", "a"], "phi")]
    t = -30.0
    off = (math.tanh(t) + t) - 40.0 * t  # 40·t + off = tanh(t) + t at the switch

    def fn(h):
        return torch.where(h < t, 40.0 * h + off, torch.tanh(h) + h)

    return Composite(nodes, {"t": t, "k": 40.0, "off": off}, fn), [-40.0, -35.0, 0.5]


BOUNDED = [issue_switch, far_switch, max_of_lines]


def discontinuous_switch():
    nodes = [N("Relu", ["h"], "r"), N("Greater", ["h", "c50"], "g"), N("Mul", ["h", "two"], "m"),
             N("Where", ["g", "m", "r"], "phi")]
    return Composite(nodes, {"c50": 50.0, "two": 2.0}, None)


def near_identity_cubic():
    """h + 1e-6·h³: the identity to 1e-6 on [−1, 1], no finite Lipschitz constant."""
    nodes = [N("Mul", ["h", "h"], "h2"), N("Mul", ["h2", "h"], "h3"), N("Mul", ["h3", "eps"], "e"), N("Add", ["h", "e"], "phi")]
    return Composite(nodes, {"eps": 1e-6}, None)


def sinh_like():
    """(exp(h) − exp(−h))/2 · 1e-3 + h: smooth, close to the identity near 0, not Lipschitz."""
    nodes = [N("Exp", ["h"], "e1"), N("Neg", ["h"], "n"), N("Exp", ["n"], "e2"), N("Sub", ["e1", "e2"], "d"),
             N("Mul", ["d", "k"], "m"), N("Add", ["m", "h"], "phi")]
    return Composite(nodes, {"k": 5e-4}, None)


def x_tanh_x():
    return Composite([N("Tanh", ["h"], "t"), N("Mul", ["h", "t"], "phi")], {}, None)


def square():
    return Composite([N("Mul", ["h", "h"], "phi")], {}, None)


def exp_only():
    return Composite([N("Exp", ["h"], "phi")], {}, None)


def jump_in_leaky():
    """Where(h > 0, h, 0.01·h − 1e-3): a jump of 1e-3 at 0."""
    nodes = [N("Greater", ["h", "zero"], "g"), N("Mul", ["h", "s"], "m"), N("Sub", ["m", "j"], "l"),
             N("Where", ["g", "h", "l"], "phi")]
    return Composite(nodes, {"zero": 0.0, "s": 0.01, "j": 1e-3}, None)


def softplus_threshold_10():
    """Softplus switched at 10: a jump of 4.5e-5, far above float32 rounding there."""
    nodes = [N("Softplus", ["h"], "sp"), N("Greater", ["h", "t"], "g"), N("Where", ["g", "h", "sp"], "phi")]
    return Composite(nodes, {"t": 10.0}, None)


def switch_on_tanh():
    """Where(tanh(h) > 0.5, h, 0): the switch point is not located exactly (and it jumps)."""
    nodes = [N("Tanh", ["h"], "t"), N("Greater", ["t", "half"], "g"), N("Where", ["g", "h", "zero"], "phi")]
    return Composite(nodes, {"half": 0.5, "zero": 0.0}, None)


def silu_wrong_constant():
    """h·σ(1.01·h): not SiLU."""
    nodes = [N("Mul", ["h", "k"], "hk"), N("Sigmoid", ["hk"], "s"), N("Mul", ["h", "s"], "phi")]
    return Composite(nodes, {"k": 1.01}, None)


REFUSED = [discontinuous_switch, near_identity_cubic, sinh_like, x_tanh_x, square, exp_only, jump_in_leaky,
           softplus_threshold_10, switch_on_tanh, silu_wrong_constant]


@pytest.mark.parametrize("case", BOUNDED + [tanh_plus_where], ids=lambda c: c.__name__)
def test_crafted_continuous_switches_get_bounds_above_the_jacobian(tmp_path, capsys, case):
    comp, values = case()
    path, model = _save(tmp_path, comp)
    hs = _active(values)
    _reference_check(model, comp, hs.float())
    measured = _jacobian_norms(comp, hs)
    norms = ("2", "inf", "1") if case is issue_switch else ("2",)
    for norm in norms:
        bounds = _bound(capsys, path, norm)
        for method, value in bounds.items():
            assert value >= measured[norm] * (1 - 1e-6), (case.__name__, norm, method, value, measured[norm])


def test_the_issue_example_is_no_longer_bounded_as_relu(tmp_path, capsys):
    """The switch at 50 was read as ReLU ([0, 1]); now it is a derived activation with slopes
    [0, 1000], and the ℓ2 bound exceeds the measured Jacobian norm."""
    comp, values = issue_switch()
    path, _ = _save(tmp_path, comp)
    graph = load_model(path)
    acts = [n.activation for n in graph.nodes if isinstance(n, ActivationNode)]
    assert len(acts) == 1 and acts[0].key == "derived"
    assert acts[0].alpha == pytest.approx(0.0, abs=1e-12) and acts[0].beta == pytest.approx(1000.0, rel=1e-12)
    assert acts[0].beta >= 1000.0
    assert any("proven from its formula" in n for n in graph.notes)
    measured = _jacobian_norms(comp, _active(values))["2"]
    assert measured > 100
    assert _bound(capsys, path, "2")["liplt"] >= measured


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.__name__)
def test_crafted_non_lipschitz_or_unlocatable_composites_are_refused(tmp_path, capsys, case):
    comp = case()
    path, _ = _save(tmp_path, comp)
    names = [n.name for n in comp.nodes]
    err = _refused(capsys, path, names)
    assert "matches no supported activation" in err


def test_refusal_messages_say_why(tmp_path):
    expectations = {
        discontinuous_switch: "jumps",
        near_identity_cubic: "derivative is unbounded",
        x_tanh_x: "derivative is unbounded",
        softplus_threshold_10: "jumps",
        switch_on_tanh: "not an affine function",
    }
    for case, why in expectations.items():
        path, _ = _save(tmp_path, case(), f"{case.__name__}.onnx")
        with pytest.raises(UnsupportedOpError, match=why):
            load_model(path)


# ---------------------------------------------------------------------- recognised patterns
def _c(**consts):
    return {k: float(v) for k, v in consts.items()}


PATTERNS = [
    # name, nodes, constants, key, params
    ("silu x*sigmoid(x)", [N("Sigmoid", ["h"], "s"), N("Mul", ["s", "h"], "phi")], {}, "silu", {}),
    ("silu x/(1+exp(-x))", [N("Neg", ["h"], "n"), N("Exp", ["n"], "e"), N("Add", ["one", "e"], "d"), N("Div", ["h", "d"], "phi")],
     _c(one=1), "silu", {}),
    ("gelu erf, torch", [N("Div", ["h", "sqrt2"], "d"), N("Erf", ["d"], "e"), N("Add", ["e", "one"], "a"), N("Mul", ["h", "a"], "m"),
                          N("Mul", ["m", "half"], "phi")], _c(sqrt2=math.sqrt(2), one=1, half=0.5), "gelu", {}),
    ("gelu erf, expanded", [N("Mul", ["h", "isq"], "d"), N("Erf", ["d"], "e"), N("Mul", ["h", "e"], "he"), N("Mul", ["he", "half"], "a"),
                             N("Mul", ["h", "half"], "b"), N("Add", ["a", "b"], "phi")], _c(isq=math.sqrt(0.5), half=0.5), "gelu", {}),
    ("gelu tanh", [N("Mul", ["h", "h"], "h2"), N("Mul", ["h", "h2"], "h3"), N("Mul", ["c", "h3"], "ch3"), N("Add", ["h", "ch3"], "in"),
                   N("Mul", ["k", "in"], "kin"), N("Tanh", ["kin"], "t"), N("Add", ["one", "t"], "a"), N("Mul", ["h", "a"], "m"),
                   N("Mul", ["half", "m"], "phi")], _c(c=0.044715, k=math.sqrt(2 / math.pi), one=1, half=0.5), "gelu_tanh", {}),
    ("mish softplus", [N("Softplus", ["h"], "sp"), N("Tanh", ["sp"], "t"), N("Mul", ["h", "t"], "phi")], {}, "mish", {}),
    ("mish log(1+exp)", [N("Exp", ["h"], "e"), N("Add", ["e", "one"], "a"), N("Log", ["a"], "l"), N("Tanh", ["l"], "t"),
                         N("Mul", ["t", "h"], "phi")], _c(one=1), "mish", {}),
    # TorchScript's Softplus(β=2): Mul, Softplus, Div stay exact linear nodes around a Softplus(β=1)
    ("softplus beta=2, TorchScript", [N("Mul", ["h", "b"], "hb"), N("Softplus", ["hb"], "sp"), N("Div", ["sp", "b"], "phi")],
     _c(b=2), "softplus", {"beta": 1.0}),
    ("softplus beta=3, dynamo threshold", [N("Mul", ["h", "b"], "hb"), N("Softplus", ["hb"], "sp"), N("Div", ["sp", "b"], "d"),
                                           N("Greater", ["hb", "t"], "g"), N("Where", ["g", "h", "d"], "phi")],
     _c(b=3, t=20), "softplus", {"beta": 3.0}),
    ("relu max", [N("Max", ["h", "zero"], "phi")], _c(zero=0), "relu", {}),
    ("relu where", [N("Greater", ["h", "zero"], "g"), N("Where", ["g", "h", "zero"], "phi")], _c(zero=0), "relu", {}),
    ("relu mask", [N("Greater", ["h", "zero"], "g"), N("Cast", ["g"], "gf", to=TensorProto.FLOAT), N("Mul", ["h", "gf"], "phi")],
     _c(zero=0), "relu", {}),
    ("leaky where", [N("Greater", ["h", "zero"], "g"), N("Mul", ["h", "s"], "m"), N("Where", ["g", "h", "m"], "phi")],
     _c(zero=0, s=0.1), "leaky_relu", {"negative_slope": 0.1}),
    ("leaky max", [N("Mul", ["h", "s"], "m"), N("Max", ["h", "m"], "phi")], _c(s=0.2), "leaky_relu", {"negative_slope": 0.2}),
    ("clip min/max", [N("Max", ["h", "lo"], "a"), N("Min", ["a", "hi"], "phi")], _c(lo=-2, hi=3), "clip", {"min": -2.0, "max": 3.0}),
    # clip(x/6 + 1/2, 0, 1): the nearest base that matches wins, so the affine map stays a linear node
    ("hardsigmoid max/min", [N("Mul", ["h", "sixth"], "m"), N("Add", ["m", "half"], "a"), N("Max", ["a", "zero"], "c"),
                             N("Min", ["c", "one"], "phi")], _c(sixth=1 / 6, half=0.5, zero=0, one=1), "clip",
     {"min": 0.0, "max": 1.0}),
    ("hardsigmoid times h", [N("Mul", ["h", "sixth"], "m"), N("Add", ["m", "half"], "a"), N("Max", ["a", "zero"], "c"),
                             N("Min", ["c", "one"], "hs"), N("Mul", ["hs", "h"], "phi")], _c(sixth=1 / 6, half=0.5, zero=0, one=1),
     "hardswish", {}),
    ("hardswish via HardSigmoid", [N("HardSigmoid", ["h"], "hs", alpha=1 / 6, beta=0.5), N("Mul", ["h", "hs"], "phi")], {},
     "hardswish", {}),
    ("hardswish relu6", [N("Add", ["h", "three"], "a"), N("Clip", ["a", "zero", "six"], "c"), N("Mul", ["h", "c"], "m"),
                         N("Div", ["m", "six"], "phi")], _c(three=3, zero=0, six=6), "hardswish", {}),
    ("elu where", [N("Greater", ["h", "zero"], "g"), N("Exp", ["h"], "e"), N("Sub", ["e", "one"], "s"), N("Mul", ["s", "a"], "m"),
                   N("Where", ["g", "h", "m"], "phi")], _c(zero=0, one=1, a=0.7), "elu", {"alpha": 0.7}),
    ("sigmoid 1/(1+exp(-x))", [N("Neg", ["h"], "n"), N("Exp", ["n"], "e"), N("Add", ["e", "one"], "d"), N("Reciprocal", ["d"], "phi")],
     _c(one=1), "sigmoid", {}),
]


@pytest.mark.parametrize("name,nodes,consts,key,params", PATTERNS, ids=[p[0] for p in PATTERNS])
def test_recognised_patterns_map_to_the_right_activation(tmp_path, name, nodes, consts, key, params):
    path, model = _save(tmp_path, Composite(nodes, consts, None))
    graph = load_model(path)
    acts = [n.activation for n in graph.nodes if isinstance(n, ActivationNode)]
    assert [a.key for a in acts] == [key], [a.describe() for a in acts]
    got = dict(acts[0].params)
    for k, v in params.items():
        assert got[k] == pytest.approx(v, rel=2**-22), (k, got[k], v)
    # and the graph is the file's function, far from the origin too
    sess = ReferenceEvaluator(model)
    gen = np.random.default_rng(1)
    for scale in (1.0, 30.0):
        x = (gen.normal(size=(1, N_IN)) * scale).astype(np.float32)
        ref = sess.run(None, {"input": x})[0]
        out = graph.evaluate(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * (1 + np.abs(ref).max()))


WRONG = [
    ("x*sigmoid(1.01x)", [N("Mul", ["h", "k"], "hk"), N("Sigmoid", ["hk"], "s"), N("Mul", ["h", "s"], "phi")], _c(k=1.01), "silu",
     lambda h: h * torch.sigmoid(1.01 * h)),
    ("gelu erf(x/1.5)", [N("Div", ["h", "c"], "d"), N("Erf", ["d"], "e"), N("Add", ["e", "one"], "a"), N("Mul", ["h", "a"], "m"),
                         N("Mul", ["m", "half"], "phi")], _c(c=1.5, one=1, half=0.5), "gelu",
     lambda h: h * 0.5 * (1 + torch.erf(h / 1.5))),
    ("gelu 0.5001", [N("Div", ["h", "c"], "d"), N("Erf", ["d"], "e"), N("Add", ["e", "one"], "a"), N("Mul", ["h", "a"], "m"),
                     N("Mul", ["m", "half"], "phi")], _c(c=math.sqrt(2), one=1, half=0.5001), "gelu",
     lambda h: h * 0.5001 * (1 + torch.erf(h / math.sqrt(2)))),
    ("mish with tanh(1.1 softplus)", [N("Softplus", ["h"], "sp"), N("Mul", ["sp", "k"], "k1"), N("Tanh", ["k1"], "t"),
                                      N("Mul", ["h", "t"], "phi")], _c(k=1.1), "mish",
     lambda h: h * torch.tanh(1.1 * torch.nn.functional.softplus(h))),
    ("hardsigmoid 0.17", [N("Mul", ["h", "a"], "m"), N("Add", ["m", "half"], "b"), N("Clip", ["b", "zero", "one"], "phi")],
     _c(a=0.17, half=0.5, zero=0, one=1), "hardsigmoid", lambda h: torch.clamp(0.17 * h + 0.5, 0, 1)),
    ("leaky switch at 1e-3", [N("Greater", ["h", "t"], "g"), N("Mul", ["h", "s"], "m"), N("Where", ["g", "h", "m"], "phi")],
     _c(t=1e-3, s=0.1), "leaky_relu", lambda h: torch.where(h > 1e-3, h, 0.1 * h)),
    ("softplus threshold switch with mismatched beta", [N("Mul", ["h", "b"], "hb"), N("Softplus", ["hb"], "sp"),
                                                       N("Div", ["sp", "c"], "d"), N("Greater", ["hb", "t"], "g"),
                                                       N("Where", ["g", "h", "d"], "phi")],
     _c(b=2, c=2.5, t=20), "softplus",
     lambda h: torch.where(2 * h > 20, h, torch.nn.functional.softplus(2 * h) / 2.5)),
]


@pytest.mark.parametrize("name,nodes,consts,not_key,fn", WRONG, ids=[w[0] for w in WRONG])
def test_a_wrong_constant_is_not_accepted_as_the_activation(tmp_path, capsys, name, nodes, consts, not_key, fn):
    comp = Composite(nodes, consts, fn)
    path, model = _save(tmp_path, comp)
    try:
        graph = load_model(path)
    except UnsupportedOpError:
        return  # refused: fine
    acts = [n.activation for n in graph.nodes if isinstance(n, ActivationNode)]
    assert not_key not in [a.key for a in acts], [a.describe() for a in acts]
    # whatever it became (a derived activation, or an activation between affine maps), its bound
    # is above the Jacobian on a wide range of pre-activations
    hs = _active([-30.0, -3.0, -1.0, -0.2, 0.0, 0.0005, 0.002, 0.3, 1.0, 2.5, 30.0])
    _reference_check(model, comp, hs.float())
    measured = _jacobian_norms(comp, hs)["2"]
    for method, value in _bound(capsys, path, "2").items():
        assert value >= measured * (1 - 1e-6), (name, method, value, measured)


# ---------------------------------------------------------------------- real exporters
EXPORTED = [
    (torch.nn.SiLU(), "silu", {}), (torch.nn.GELU(), "gelu", {}), (torch.nn.GELU(approximate="tanh"), "gelu_tanh", {}),
    (torch.nn.Mish(), "mish", {}), (torch.nn.Softplus(), "softplus", {"beta": 1.0}),
    (torch.nn.Hardswish(), "hardswish", {}), (torch.nn.Hardsigmoid(), "hardsigmoid", {}),
    (torch.nn.ReLU6(), "clip", {"min": 0.0, "max": 6.0}), (torch.nn.Hardtanh(-2.0, 3.0), "clip", {"min": -2.0, "max": 3.0}),
    (torch.nn.ELU(0.5), "elu", {"alpha": 0.5}), (torch.nn.LeakyReLU(0.1), "leaky_relu", {"negative_slope": 0.1}),
    (torch.nn.Sigmoid(), "sigmoid", {}), (torch.nn.Tanh(), "tanh", {}),
]
EXPORTERS = [pytest.param(False, 11, id="ts11"), pytest.param(False, 17, id="ts17"),
             pytest.param(True, None, id="dynamo", marks=pytest.mark.slow)]


@pytest.mark.parametrize("dynamo,opset", EXPORTERS)
def test_every_activation_from_the_real_exporters_is_recognised_with_its_constants(tmp_path, dynamo, opset):
    """Both torch exporters write these in their own ways (HardSigmoid·x for HardSwish at opset 11,
    nine ops for GELU-tanh, Where(x > 20, …) around Softplus for dynamo, …); onnx2torch adds its
    own modules.  Each comes back as the same activation with the same constants."""
    from tests.conftest import export_onnx

    for module, key, params in EXPORTED:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(5, 6), module, torch.nn.Linear(6, 3))
        path = export_onnx(net, (5,), tmp_path / f"{key}.onnx", dynamo=dynamo, opset=opset)
        graph = load_model(path)
        acts = [n.activation for n in graph.nodes if isinstance(n, ActivationNode)]
        assert [a.key for a in acts] == [key], (key, [a.describe() for a in acts])
        got = dict(acts[0].params)
        for k, v in params.items():
            assert got[k] == pytest.approx(v, rel=2**-22), (key, k, got[k], v)
        x = torch.randn(16, 5) * 20
        with torch.no_grad():
            torch.testing.assert_close(graph.evaluate(x), net(x), rtol=1e-4, atol=1e-4)


def test_torch_softplus_threshold_must_hide_its_jump_below_float32_rounding():
    """torch's Softplus returns x for βx > threshold; at threshold 10 the switch jumps by 4.5e-5."""
    from liplt_cli.load import graph_from_module

    torch.manual_seed(0)
    for threshold, ok in ((20.0, True), (15.0, True), (10.0, False)):
        for beta in (1.0, 2.0):
            net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Softplus(beta, threshold), torch.nn.Linear(4, 2))
            if ok:
                graph = graph_from_module(net, (3,))
                assert [n.activation.key for n in graph.nodes if isinstance(n, ActivationNode)] == ["softplus"]
            else:
                with pytest.raises(UnsupportedOpError, match="threshold 10 jumps"):
                    graph_from_module(net, (3,))


def test_recognised_activations_with_float32_constants_keep_sound_slopes(tmp_path):
    """Exporters store 1/6 as float32 (0.16666667…) and a Div by 3 becomes ×float32(1/3): the
    recognised activation's [α, β] must still contain the slopes of the formula as stored."""
    a32 = float(np.float32(1 / 6))
    third = float(np.float32(1 / 3))
    cases = [
        ([N("HardSigmoid", ["h"], "phi", alpha=1 / 6, beta=0.5)], {}, lambda h: torch.clamp(a32 * h + 0.5, 0, 1)),
        ([N("HardSigmoid", ["h"], "hs", alpha=1 / 6, beta=0.5), N("Mul", ["h", "hs"], "phi")], {},
         lambda h: h * torch.clamp(a32 * h + 0.5, 0, 1)),
        ([N("Mul", ["h", "b"], "hb"), N("Softplus", ["hb"], "sp"), N("Div", ["sp", "b"], "d"), N("Greater", ["hb", "t"], "g"),
          N("Where", ["g", "h", "d"], "phi")], _c(b=3, t=20),
         lambda h: torch.nn.functional.softplus(3 * h, threshold=1e9) * third),
    ]
    for k, (nodes, consts, fn) in enumerate(cases):
        path, _ = _save(tmp_path, Composite(nodes, consts, fn), f"c{k}.onnx")
        graph = load_model(path)
        (act,) = [n.activation for n in graph.nodes if isinstance(n, ActivationNode)]
        h = torch.linspace(-10, 10, 400_001, dtype=torch.float64, requires_grad=True)
        (d,) = torch.autograd.grad(fn(h).sum(), h)
        assert act.alpha <= float(d.min()) and float(d.max()) <= act.beta, (act.describe(), act.alpha, act.beta, float(d.max()))
        # and the local slope ranges contain the stored formula's derivative (kinks near ±3 included)
        centre = torch.cat([torch.linspace(-4, 4, 801, dtype=torch.float64), torch.tensor([-3.0, 3.0], dtype=torch.float64)])
        for w in (1e-9, 1e-3, 0.5):
            lo, hi = slope_range(act, centre - w, centre + w)
            x = (centre[:, None] + w * torch.linspace(-1, 1, 41, dtype=torch.float64)[None, :]).requires_grad_(True)
            (dx,) = torch.autograd.grad(fn(x).sum(), x)
            assert bool((dx >= lo[:, None]).all()) and bool((dx <= hi[:, None]).all()), (act.describe(), w)
