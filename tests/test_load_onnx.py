"""ONNX loading: both torch exporters at several opsets, real-file habits, and every error path."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from torch import nn

from liplt_cli.cli.app import run
from liplt_cli.errors import GraphError, InputShapeError, ModelLoadError, UnsupportedOpError
from liplt_cli.graph import ActivationNode, Affine, Conv, Dense, LinearNode, Pad
from liplt_cli.load import load_model
from liplt_cli.train.archs import build_arch
from tests.conftest import export_onnx

pytestmark = pytest.mark.usefixtures("single_thread")


def assert_same(graph, module, shape, batch=3, seed=0):
    """Graph and module agree to 1e-5 (relative to the output scale) on random inputs."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, *shape, generator=gen) * 2 - 0.5
    with torch.no_grad():
        ref = torch.cat([module(x[i:i + 1]) for i in range(batch)])
        got = graph.evaluate(x)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


# ---------------------------------------------------------------------- models built in torch
class Normalize(nn.Module):
    def forward(self, x):
        return (x - 0.45) / 0.2


class ResidualBN(nn.Module):
    """Sub/Div normalisation, conv + BatchNorm, a residual block with Add, average pool, dense."""

    def __init__(self):
        super().__init__()
        self.norm = Normalize()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.bn0 = nn.BatchNorm2d(8)
        self.c1 = nn.Conv2d(8, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 10)
        gen = torch.Generator().manual_seed(0)
        for bn in (self.bn0, self.bn1, self.bn2):
            with torch.no_grad():
                bn.running_mean.copy_(torch.randn(8, generator=gen) * 0.2)
                bn.running_var.copy_(torch.rand(8, generator=gen) + 0.5)
                bn.weight.copy_(torch.rand(8, generator=gen) + 0.5)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(self.norm(x))))
        y = torch.relu(self.bn1(self.c1(x)))
        x = torch.relu(x + self.bn2(self.c2(y)))
        return self.fc(torch.flatten(self.pool(x), 1))


def conv_net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU(), nn.Conv2d(4, 8, 4, 2, 1), nn.ReLU(),
        nn.MaxPool2d(2), nn.AvgPool2d(3, 1, 1, count_include_pad=False), nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )


def _models():
    torch.manual_seed(0)
    return {
        "mlp": (nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Tanh(), nn.Linear(32, 16), nn.LeakyReLU(0.1), nn.Linear(16, 10)), (1, 28, 28)),
        "conv": (conv_net(), (1, 16, 16)),
        "residual_bn": (ResidualBN(), (3, 16, 16)),
        "4C3F": (build_arch("4C3F"), (1, 28, 28)),
        "6C2F": (build_arch("6C2F"), (3, 32, 32)),
    }


MODELS = _models()

EXPORTS = [
    pytest.param("mlp", False, 13, id="mlp-ts13"),
    pytest.param("mlp", False, 17, id="mlp-ts17"),
    pytest.param("conv", False, 13, id="conv-ts13"),
    pytest.param("conv", False, 17, id="conv-ts17"),
    pytest.param("residual_bn", False, 13, id="residual-ts13"),
    pytest.param("residual_bn", False, 17, id="residual-ts17"),
    # TorchScript at opset 19/20 writes AveragePool-19 / Constant-19, which onnx2torch lacks
    pytest.param("residual_bn", False, 19, id="residual-ts19"),
    pytest.param("conv", False, 20, id="conv-ts20"),
    pytest.param("4C3F", False, 17, id="4C3F-ts17"),
    pytest.param("6C2F", False, 13, id="6C2F-ts13"),
    # dynamo: opset 18 by default (the opset 20 with 4C3F is below), Reshape allowzero=1
    pytest.param("residual_bn", True, None, id="residual-dynamo"),
    pytest.param("4C3F", True, 20, id="4C3F-dynamo20"),
    pytest.param("mlp", True, None, id="mlp-dynamo"),
    pytest.param("conv", True, 18, id="conv-dynamo18"),
    pytest.param("6C2F", True, None, id="6C2F-dynamo"),
]


@pytest.mark.parametrize("name,dynamo,opset", EXPORTS)
def test_exported_model_matches_torch(tmp_path, name, dynamo, opset):
    module, shape = MODELS[name]
    path = export_onnx(module, shape, tmp_path / f"{name}.onnx", dynamo=dynamo, opset=opset,
                       **({} if dynamo else {"do_constant_folding": False}))
    graph = load_model(path)
    assert graph.input_shape == shape
    assert graph.num_classes == 10
    assert_same(graph, module, shape)
    if dynamo:
        assert any("allowzero" in n for n in graph.notes), graph.notes
    if dynamo or opset > 17:
        assert any("converted to 17" in n for n in graph.notes), graph.notes


def test_residual_graph_has_sums_and_folded_batchnorm(tmp_path):
    module, shape = MODELS["residual_bn"]
    graph = load_model(export_onnx(module, shape, tmp_path / "r.onnx", do_constant_folding=False))
    kinds = [type(n).__name__ for n in graph.nodes]
    assert kinds.count("SumNode") == 1
    assert not any(isinstance(n, LinearNode) and n.op.kind == "affine" and n.op.label == "batchnorm" for n in graph.nodes)
    assert any("batchnorm" in note for note in graph.notes)
    # the Sub/Div normalisation stays an exact Affine in front of the first conv
    first = graph.nodes[1]
    assert isinstance(first.op, Affine)
    torch.testing.assert_close(first.op.scale.reshape(-1), torch.tensor([5.0]))


def test_final_softmax_stripped_final_relu_kept(tmp_path):
    torch.manual_seed(1)
    soft = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4), nn.Softmax(dim=1))
    graph = load_model(export_onnx(soft, (1, 4, 4), tmp_path / "s.onnx"))
    assert any("stripped final Softmax" in n for n in graph.notes)
    assert_same(graph, soft[:-1], (1, 4, 4))
    relu_last = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU())
    graph = load_model(export_onnx(relu_last, (1, 4, 4), tmp_path / "r.onnx"))
    assert isinstance(graph.node(graph.output), ActivationNode)
    assert graph.node(graph.output).activation.key == "relu"
    assert not graph.notes
    assert_same(graph, relu_last, (1, 4, 4))


def test_logsoftmax_in_the_middle_is_unsupported(tmp_path):
    class Mid(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 3)

        def forward(self, x):
            return self.b(torch.log_softmax(self.a(x), 1))

    with pytest.raises(UnsupportedOpError, match="LogSoftmax"):
        load_model(export_onnx(Mid(), (4,), tmp_path / "m.onnx"))


# ---------------------------------------------------------------------- hand-built ONNX files
def _init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _model(nodes, inits, in_shape, out_shape=None, opset=13, in_name="input", out_name="output"):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset < 15 else 8
    onnx.checker.check_model(model)
    return model


def _save(model, path):
    onnx.save(model, str(path))
    return path


def _reference(model, x):
    """Output of onnx's own reference evaluator (independent of onnx2torch)."""
    sess = ReferenceEvaluator(model)
    return torch.from_numpy(np.asarray(sess.run(None, {model.graph.input[0].name: x.numpy()})[0]))


def _check_against_reference(graph, model, onnx_in_shape, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=onnx_in_shape).astype(np.float32))
    ref = _reference(model, x)
    got = graph.evaluate(x.reshape(1, *graph.input_shape)).detach()
    assert float((got.reshape(ref.shape) - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


RNG = np.random.default_rng(0)


def test_matmul_add_with_sub_div_normalisation_and_noops(tmp_path):
    w1, b1 = RNG.normal(size=(784, 20)), RNG.normal(size=20)
    w2, b2 = RNG.normal(size=(20, 10)), RNG.normal(size=10)
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["s"], name="sub_mean"),
        helper.make_node("Div", ["s", "std"], ["d"], name="div_std"),
        helper.make_node("Sub", ["d", "zero"], ["d0"], name="sub_zero"),
        helper.make_node("Div", ["d0", "one"], ["d1"], name="div_one"),
        helper.make_node("Pad", ["d1", "pads"], ["p"], name="pad_zero"),
        helper.make_node("Flatten", ["p"], ["f"], axis=1, name="flat"),
        helper.make_node("MatMul", ["f", "w1"], ["m1"], name="mm1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="add1"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["m2"], name="mm2"),
        helper.make_node("Add", ["m2", "b2"], ["output"], name="add2"),
    ]
    inits = [_init("mean", [0.1307]), _init("std", [0.3081]), _init("zero", [0.0]), _init("one", [1.0]),
             numpy_helper.from_array(np.zeros(8, dtype=np.int64), "pads"),
             _init("w1", w1), _init("b1", b1), _init("w2", w2), _init("b2", b2)]
    model = _model(nodes, inits, [1, 1, 28, 28], [1, 10])
    graph = load_model(_save(model, tmp_path / "mm.onnx"))
    _check_against_reference(graph, model, (1, 1, 28, 28))
    ops = [n.op for n in graph.nodes if isinstance(n, LinearNode)]
    # normalisation is one Affine; no-op Sub 0 / Div 1 and the zero Pad leave no node; Add folded into MatMul
    assert [type(op).__name__ for op in ops] == ["Affine", "Reshape", "Dense", "Dense"]
    assert all(op.bias is not None for op in ops if isinstance(op, Dense))
    assert not any(isinstance(op, Pad) for op in ops)


@pytest.mark.parametrize("layout", ["1x784x1x1", "kernel28"])
def test_dense_layers_written_as_conv(tmp_path, layout):
    if layout == "1x784x1x1":
        in_shape, w1 = [1, 784, 1, 1], RNG.normal(size=(16, 784, 1, 1))
    else:
        in_shape, w1 = [1, 1, 28, 28], RNG.normal(size=(16, 1, 28, 28))
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="fc1_as_conv"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="fc2_as_conv"),
        helper.make_node("Flatten", ["c2"], ["output"], axis=1, name="flat"),
    ]
    inits = [_init("w1", w1), _init("b1", RNG.normal(size=16)), _init("w2", RNG.normal(size=(10, 16, 1, 1))),
             _init("b2", RNG.normal(size=10))]
    model = _model(nodes, inits, in_shape, [1, 10])
    graph = load_model(_save(model, tmp_path / "c.onnx"))
    assert graph.input_shape == tuple(in_shape[1:])
    assert graph.num_classes == 10
    assert sum(isinstance(n, LinearNode) and isinstance(n.op, Conv) for n in graph.nodes) == 2
    _check_against_reference(graph, model, tuple(in_shape))


@pytest.mark.parametrize("in_shape", [[1, 784, 1], [1, 1, 1, 784]])
def test_vector_inputs(tmp_path, in_shape):
    nodes = [
        helper.make_node("Reshape", ["input", "shape"], ["flat"], name="to_vector"),
        helper.make_node("Gemm", ["flat", "w", "b"], ["g"], transB=1, name="fc1"),
        helper.make_node("Relu", ["g"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["output"], transB=1, name="fc2"),
    ]
    inits = [numpy_helper.from_array(np.array([1, 784], dtype=np.int64), "shape"),
             _init("w", RNG.normal(size=(12, 784))), _init("b", RNG.normal(size=12)),
             _init("w2", RNG.normal(size=(10, 12))), _init("b2", RNG.normal(size=10))]
    model = _model(nodes, inits, in_shape, [1, 10])
    graph = load_model(_save(model, tmp_path / "v.onnx"))
    assert graph.input_shape == tuple(in_shape[1:])
    _check_against_reference(graph, model, tuple(in_shape))


def _opset8_model():
    """MATLAB-style: opset 8, Flatten-1, Gemm-7, a final Softmax, initialisers also listed as inputs."""
    w1, w2 = RNG.normal(size=(24, 36)), RNG.normal(size=(10, 24))
    nodes = [
        helper.make_node("Flatten", ["input"], ["f"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["g1"], transB=1, name="fc_1"),
        helper.make_node("Relu", ["g1"], ["r1"], name="relu_1"),
        helper.make_node("Gemm", ["r1", "w2", "b2"], ["g2"], transB=1, name="fc_2"),
        helper.make_node("Softmax", ["g2"], ["output"], axis=1, name="softmax"),
    ]
    inits = [_init("w1", w1), _init("b1", RNG.normal(size=24)), _init("w2", w2), _init("b2", RNG.normal(size=10))]
    graph = helper.make_graph(
        nodes, "matlab",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 6, 6])]
        + [helper.make_tensor_value_info(i.name, TensorProto.FLOAT, list(i.dims)) for i in inits],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    model.ir_version = 3
    onnx.checker.check_model(model)
    return model


def test_opset8_flatten1_and_softmax(tmp_path):
    model = _opset8_model()
    graph = load_model(_save(model, tmp_path / "m8.onnx"))
    assert any("opset 8 converted" in n for n in graph.notes)
    assert any("Softmax" in n for n in graph.notes)
    x = torch.from_numpy(RNG.normal(size=(1, 1, 6, 6)).astype(np.float32))
    logits = graph.evaluate(x).detach()
    torch.testing.assert_close(torch.softmax(logits, 1), _reference(model, x), rtol=1e-5, atol=1e-6)


def test_dynamic_input_needs_input_shape(tmp_path, capsys):
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["output"], name="flat")]
    model = _model(nodes, [_init("w", RNG.normal(size=(5, 2, 3, 3)))], ["N", 2, "H", "W"], ["N", 5])
    path = _save(model, tmp_path / "dyn.onnx")
    assert run(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "dynamic" in err and "--input-shape" in err and "Traceback" not in err
    graph = load_model(path, input_shape=(2, 9, 7))
    assert graph.input_shape == (2, 9, 7) and graph.output_shape == (5,)
    _check_against_reference(graph, model, (1, 2, 9, 7))
    with pytest.raises(InputShapeError, match="contradicts"):
        load_model(path, input_shape=(3, 9, 7))
    with pytest.raises(InputShapeError, match="per-sample"):
        load_model(path, input_shape=(9, 7))


def test_mean_std_prepended(tmp_path):
    module, shape = MODELS["mlp"]
    path = export_onnx(module, shape, tmp_path / "m.onnx")
    graph = load_model(path, mean=[0.5], std=[0.25])
    x = torch.rand(2, *shape)
    with torch.no_grad():
        torch.testing.assert_close(graph.evaluate(x), module((x - 0.5) / 0.25), rtol=1e-5, atol=1e-5)
    assert any("normalisation" in n for n in graph.notes)


# ---------------------------------------------------------------------- error paths (CLI)
def _inspect_error(capsys, *args):
    code = run(["inspect", *map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def test_missing_file(tmp_path, capsys):
    code, err = _inspect_error(capsys, tmp_path / "nope.onnx")
    assert code == 2 and "does not exist" in err


def test_not_an_onnx_file(tmp_path, capsys):
    path = tmp_path / "model.onnx"
    path.write_text("this is a text file, not a model\n" * 20)
    code, err = _inspect_error(capsys, path)
    assert code == 2 and "neither an ONNX nor a safetensors file" in err


def test_empty_file_and_directory(tmp_path, capsys):
    (tmp_path / "empty.onnx").write_bytes(b"")
    code, err = _inspect_error(capsys, tmp_path / "empty.onnx")
    assert code == 2 and "empty" in err
    code, err = _inspect_error(capsys, tmp_path)
    assert code == 2 and "directory" in err


def test_truncated_onnx(tmp_path, capsys):
    module, shape = MODELS["mlp"]
    data = export_onnx(module, shape, tmp_path / "full.onnx").read_bytes()
    for cut in (len(data) // 2, len(data) - 7):
        path = tmp_path / "cut.onnx"
        path.write_bytes(data[:cut])
        code, err = _inspect_error(capsys, path)
        assert code == 2 and "truncated" in err, err


def test_pickle_refused(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    code, err = _inspect_error(capsys, path)
    assert code == 2 and "pickle" in err and "does not unpickle" in err


def test_unsupported_ops_are_all_named(tmp_path, capsys):
    nodes = [
        helper.make_node("Exp", ["input"], ["e"], name="my_exp"),
        helper.make_node("Gemm", ["e", "w", "b"], ["g"], transB=1, name="fc"),
        helper.make_node("Sin", ["g"], ["output"], name="my_sine"),
    ]
    model = _model(nodes, [_init("w", RNG.normal(size=(3, 4))), _init("b", RNG.normal(size=3))], [1, 4], [1, 3])
    path = _save(model, tmp_path / "u.onnx")
    with pytest.raises(UnsupportedOpError) as info:
        load_model(path)
    assert [p[0] for p in info.value.problems] == ["my_exp", "my_sine"]
    code, err = _inspect_error(capsys, path)
    assert code == 2
    assert "node 'my_exp' (op Exp" in err and "node 'my_sine' (op Sin" in err and "Supported ops:" in err
    assert "Conv" in err and "ReLU" in err


def test_op_onnx2torch_cannot_convert_is_named(tmp_path, capsys):
    nodes = [helper.make_node("Gemm", ["input", "w"], ["g"], transB=1, name="fc"),
             helper.make_node("Hardmax", ["g"], ["output"], name="hard_max")]
    model = _model(nodes, [_init("w", RNG.normal(size=(3, 4)))], [1, 4], [1, 3])
    code, err = _inspect_error(capsys, _save(model, tmp_path / "h.onnx"))
    assert code == 2 and "hard_max" in err and "Hardmax" in err


def test_input_dependent_weight(tmp_path, capsys):
    nodes = [helper.make_node("Transpose", ["input"], ["t"], perm=[0, 2, 1], name="transpose"),
             helper.make_node("MatMul", ["input", "t"], ["output"], name="gram")]
    model = _model(nodes, [], [1, 4, 4], [1, 4, 4])
    code, err = _inspect_error(capsys, _save(model, tmp_path / "w.onnx"))
    assert code == 2 and "gram" in err and "depends on the model input" in err


def test_nan_weight(tmp_path, capsys):
    w = RNG.normal(size=(3, 4))
    w[1, 2] = np.nan
    nodes = [helper.make_node("Gemm", ["input", "w", "b"], ["output"], transB=1, name="fc")]
    model = _model(nodes, [_init("w", w), _init("b", np.zeros(3))], [1, 4], [1, 3])
    path = _save(model, tmp_path / "nan.onnx")
    with pytest.raises(GraphError):
        load_model(path)
    code, err = _inspect_error(capsys, path)
    assert code == 2 and "NaN or Inf" in err


def test_nonzero_pad_value_unsupported(tmp_path):
    nodes = [helper.make_node("Pad", ["input", "pads", "value"], ["p"], name="pad_ones"),
             helper.make_node("Flatten", ["p"], ["output"], name="flat")]
    inits = [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads"), _init("value", 1.0)]
    model = _model(nodes, inits, [1, 1, 3, 3], [1, 25])
    with pytest.raises(UnsupportedOpError, match="pad_ones.*non-zero"):
        load_model(_save(model, tmp_path / "p.onnx"))


def test_allowzero_with_zero_in_shape_is_an_error(tmp_path, capsys):
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["output"], allowzero=1, name="reshape_zero")]
    inits = [numpy_helper.from_array(np.array([1, 0, 4], dtype=np.int64), "shape")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 0, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 0, 4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    code, err = _inspect_error(capsys, _save(model, tmp_path / "az.onnx"))
    assert code == 2 and "allowzero" in err and "reshape_zero" in err


def test_mean_without_std_is_an_argument_error(capsys):
    code, err = _inspect_error(capsys, "examples/mlp_relu.onnx", "--mean", "0.5")
    assert code == 2 and "--mean and --std" in err


def test_load_model_raises_library_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "missing.onnx")


# ---------------------------------------------------------------------- activations written as several ops
COMPOSED = [
    pytest.param(nn.GELU, False, "gelu", id="gelu-ts17"),
    pytest.param(nn.GELU, True, "gelu", id="gelu-dynamo"),
    pytest.param(nn.Mish, False, "mish", id="mish-ts17"),
    pytest.param(nn.Mish, True, "mish", id="mish-dynamo"),
    pytest.param(nn.SiLU, False, "silu", id="silu-ts17"),
    pytest.param(nn.SiLU, True, "silu", id="silu-dynamo", marks=pytest.mark.slow),
    pytest.param(nn.Softplus, True, "softplus", id="softplus-dynamo"),
]


@pytest.mark.parametrize("act,dynamo,key", COMPOSED)
def test_activation_written_as_several_ops(tmp_path, act, dynamo, key):
    """TorchScript writes GELU as Div/Erf/Add/Mul/Mul and SiLU as Sigmoid·x; dynamo writes Gelu-20,
    Mish-18 and Softplus as Where(x > 20, x, Log1p(Exp(x))): each becomes one activation node."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 8), act(), nn.Linear(8, 3))
    graph = load_model(export_onnx(module, (6,), tmp_path / "a.onnx", dynamo=dynamo, opset=17 if not dynamo else None))
    acts = [n for n in graph.nodes if isinstance(n, ActivationNode)]
    assert [a.activation.key for a in acts] == [key]
    assert [type(n).__name__ for n in graph.nodes] == ["InputNode", "LinearNode", "ActivationNode", "LinearNode"]
    assert_same(graph, module, (6,))


def test_elementwise_function_that_is_no_activation(tmp_path):
    nodes = [helper.make_node("Gemm", ["input", "w"], ["g"], transB=1, name="fc"),
             helper.make_node("Abs", ["g"], ["a"], name="my_abs"),
             helper.make_node("Mul", ["a", "g"], ["output"], name="times_input")]
    model = _model(nodes, [_init("w", RNG.normal(size=(3, 4)))], [1, 4], [1, 3])
    with pytest.raises(UnsupportedOpError, match="my_abs.*matches no supported activation"):
        load_model(_save(model, tmp_path / "abs.onnx"))


def test_many_onnx_ops_against_reference_evaluator(tmp_path):
    """auto_pad SAME_UPPER (asymmetric), BatchNormalization, LeakyRelu, ConvTranspose, MaxPool,
    AveragePool without padded cells, Transpose, Concat, Clip, GlobalAveragePool, Squeeze, Gemm."""
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], strides=[2, 2], auto_pad="SAME_UPPER", name="conv_same"),
        helper.make_node("BatchNormalization", ["c1", "g", "beta", "mu", "var"], ["bn"], epsilon=1e-3, name="bn"),
        helper.make_node("LeakyRelu", ["bn"], ["lr"], alpha=0.1, name="leaky"),
        helper.make_node("ConvTranspose", ["lr", "wt"], ["up"], strides=[2, 2], name="up"),
        helper.make_node("MaxPool", ["up"], ["mp"], kernel_shape=[2, 2], strides=[2, 2], name="maxpool"),
        helper.make_node("AveragePool", ["mp"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0, name="avgpool"),
        helper.make_node("Transpose", ["mp"], ["tr"], perm=[0, 1, 3, 2], name="transpose"),
        helper.make_node("Concat", ["ap", "tr"], ["cat"], axis=1, name="concat"),
        helper.make_node("Clip", ["cat", "lo", "hi"], ["cl"], name="clip"),
        helper.make_node("GlobalAveragePool", ["cl"], ["gap"], name="gap"),
        helper.make_node("Squeeze", ["gap", "axes"], ["sq"], name="squeeze"),
        helper.make_node("Gemm", ["sq", "w2", "b2"], ["output"], transB=1, name="fc"),
    ]
    inits = [
        _init("w1", RNG.normal(size=(4, 2, 3, 3))), _init("b1", RNG.normal(size=4)),
        _init("g", RNG.random(4) + 0.5), _init("beta", RNG.normal(size=4)), _init("mu", RNG.normal(size=4)),
        _init("var", RNG.random(4) + 0.5), _init("wt", RNG.normal(size=(4, 4, 2, 2))),
        _init("lo", 0.0), _init("hi", 2.0), numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes"),
        _init("w2", RNG.normal(size=(3, 8))), _init("b2", RNG.normal(size=3)),
    ]
    # opset 15: onnx's reference BatchNormalization-9 (opset 13) does not follow the formula
    model = _model(nodes, inits, [1, 2, 8, 8], [1, 3], opset=15)
    graph = load_model(_save(model, tmp_path / "ops.onnx"))
    assert any("auto_pad" in n for n in graph.notes)
    assert sum(isinstance(n, LinearNode) and isinstance(n.op, Pad) for n in graph.nodes) == 1
    for seed in range(3):
        _check_against_reference(graph, model, (1, 2, 8, 8), seed=seed)


def test_batch_one_reshape_constant(tmp_path):
    """Reshape to [1, -1] (batch 1 written into the file) runs at batch 2 but mixes the samples."""
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["flat"], name="to_row"),
             helper.make_node("Gemm", ["flat", "w", "b"], ["output"], transB=1, name="fc")]
    inits = [numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape"),
             _init("w", RNG.normal(size=(3, 12))), _init("b", RNG.normal(size=3))]
    model = _model(nodes, inits, [1, 3, 2, 2], [1, 3])
    graph = load_model(_save(model, tmp_path / "row.onnx"))
    assert graph.input_shape == (3, 2, 2) and graph.output_shape == (3,)
    _check_against_reference(graph, model, (1, 3, 2, 2))


def test_softmax_then_identity_is_still_final(tmp_path):
    nodes = [helper.make_node("Gemm", ["input", "w"], ["g"], transB=1, name="fc"),
             helper.make_node("Softmax", ["g"], ["s"], axis=1, name="softmax"),
             helper.make_node("Identity", ["s"], ["output"], name="identity")]
    model = _model(nodes, [_init("w", RNG.normal(size=(3, 4)))], [1, 4], [1, 3])
    graph = load_model(_save(model, tmp_path / "si.onnx"))
    assert any("Softmax" in n for n in graph.notes)
    assert [type(n).__name__ for n in graph.nodes] == ["InputNode", "LinearNode"]


def test_weight_times_column_vector_input(tmp_path):
    """Input [1, 784, 1] multiplied from the left, W @ x + b, as some verification benchmarks write it."""
    nodes = [helper.make_node("MatMul", ["w1", "input"], ["m1"], name="w1x"),
             helper.make_node("Add", ["m1", "b1"], ["a1"], name="plus_b1"),
             helper.make_node("Relu", ["a1"], ["r1"], name="relu"),
             helper.make_node("MatMul", ["w2", "r1"], ["m2"], name="w2x"),
             helper.make_node("Add", ["m2", "b2"], ["output"], name="plus_b2")]
    inits = [_init("w1", RNG.normal(size=(20, 784))), _init("b1", RNG.normal(size=(20, 1))),
             _init("w2", RNG.normal(size=(10, 20))), _init("b2", RNG.normal(size=(10, 1)))]
    model = _model(nodes, inits, [1, 784, 1], [1, 10, 1])
    graph = load_model(_save(model, tmp_path / "wx.onnx"))
    assert graph.input_shape == (784, 1) and graph.num_classes == 10
    assert sum(isinstance(n, LinearNode) and isinstance(n.op, Dense) for n in graph.nodes) == 2
    _check_against_reference(graph, model, (1, 784, 1))


def test_gemm_with_computed_weight_alpha_beta_and_zero_pad(tmp_path):
    """Gemm whose weight is computed from constants (Transpose of an initialiser), alpha/beta ≠ 1,
    and a Pad with zeros that is not a no-op."""
    nodes = [helper.make_node("Pad", ["input", "pads"], ["p"], mode="constant", name="pad"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Transpose", ["wt"], ["w"], perm=[1, 0], name="weight_t"),
             helper.make_node("Gemm", ["f", "w", "c"], ["output"], alpha=2.0, beta=0.5, name="gemm")]
    inits = [numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 0, 2], dtype=np.int64), "pads"),
             _init("wt", RNG.normal(size=(4, 3 * 5))), _init("c", RNG.normal(size=(1, 4)))]
    model = _model(nodes, inits, [1, 1, 2, 3], [1, 4])
    graph = load_model(_save(model, tmp_path / "gemm.onnx"))
    assert [type(n.op).__name__ for n in graph.nodes[1:]] == ["Pad", "Reshape", "Dense"]
    _check_against_reference(graph, model, (1, 1, 2, 3))


def test_dynamic_batch_with_shape_gather_reshape(tmp_path):
    """x.view(x.size(0), -1) with a dynamic batch exports Shape/Gather/Unsqueeze/Concat/Reshape:
    the shape arithmetic is folded to a constant and the Reshape stays per sample."""

    class ViewNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return self.fc(y.view(y.size(0), -1))

    torch.manual_seed(0)
    module = ViewNet()
    path = export_onnx(module, (1, 6, 6), tmp_path / "view.onnx", input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    assert "Shape" in [n.op_type for n in onnx.load(str(path)).graph.node]
    graph = load_model(path)
    assert [type(n).__name__ for n in graph.nodes] == ["InputNode", "LinearNode", "ActivationNode", "LinearNode", "LinearNode"]
    assert_same(graph, module, (1, 6, 6))


def test_reduce_mean_over_spatial_axes(tmp_path):
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("ReduceMean", ["r"], ["m"], axes=[2, 3], keepdims=0, name="spatial_mean"),
             helper.make_node("Gemm", ["m", "w2"], ["output"], transB=1, name="fc")]
    model = _model(nodes, [_init("w", RNG.normal(size=(4, 2, 3, 3))), _init("w2", RNG.normal(size=(3, 4)))],
                   [1, 2, 7, 7], [1, 3])
    graph = load_model(_save(model, tmp_path / "rm.onnx"))
    _check_against_reference(graph, model, (1, 2, 7, 7))
