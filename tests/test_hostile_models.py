"""Hostile model files: every one gets one clean error line and exit 2, nothing hangs, nothing runs.

Cases are built here (crafted ONNX with ``onnx.helper``, safetensors headers written byte by
byte, FIFOs, devices, pickles, symlinks) and go through ``liplt inspect`` / ``liplt bound``, the
real entry point.  Declared sizes are refused before any allocation, so none of these tests
allocates more than a few kilobytes.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from tests.hostile import (
    FifoGuard,
    MarkerPayload,
    activation_node,
    edit_graph,
    expect_error,
    external_gemm,
    gemm_model,
    join_safetensors,
    liplt_safetensors,
    onnx_model,
    run_cli,
    save_onnx,
    split_safetensors,
)

pytestmark = pytest.mark.usefixtures("single_thread")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mlp_relu.onnx"


# ============================================================================ the model file itself
def test_fifo_as_model_is_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    with FifoGuard(fifo) as guard:
        expect_error(capsys, ["inspect", fifo], "FIFO", "not a regular file")
    assert not guard.fired, "liplt opened the FIFO and blocked on it"


def test_symlink_to_fifo_is_refused(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "model.safetensors").symlink_to(fifo)
    with FifoGuard(fifo) as guard:
        expect_error(capsys, ["bound", tmp_path / "model.safetensors"], "FIFO")
    assert not guard.fired


@pytest.mark.parametrize("device, kind", [("/dev/zero", "character device"), ("/dev/null", "character device")])
def test_device_as_model_is_refused(capsys, device, kind):
    if not os.path.exists(device):
        pytest.skip(f"{device} is absent")
    expect_error(capsys, ["inspect", device], kind)


def test_directory_as_model_is_refused(tmp_path, capsys):
    expect_error(capsys, ["bound", tmp_path], "directory")


def test_missing_and_empty_model(tmp_path, capsys):
    expect_error(capsys, ["inspect", tmp_path / "nope.onnx"], "does not exist")
    (tmp_path / "empty.onnx").write_bytes(b"")
    expect_error(capsys, ["inspect", tmp_path / "empty.onnx"], "empty")


def test_model_file_larger_than_the_memory_budget_is_not_read(tmp_path, capsys, monkeypatch):
    big = tmp_path / "big.onnx"
    with open(big, "wb") as fh:  # a sparse file: no disk or memory is used
        fh.truncate(3 << 20)
    monkeypatch.setenv("LIPLT_MEMORY_BUDGET", "1M")
    expect_error(capsys, ["inspect", big], "memory budget", "LIPLT_MEMORY_BUDGET")


def test_malformed_memory_budget_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("LIPLT_MEMORY_BUDGET", "lots")
    expect_error(capsys, ["inspect", EXAMPLE], "LIPLT_MEMORY_BUDGET", "lots")


# ============================================================================ pickles never run
def _pickle_file(path, payload, protocol):
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_payload_is_refused_and_never_run(tmp_path, capsys, protocol):
    marker = tmp_path / "pwned"
    model = _pickle_file(tmp_path / "model.pt", {"state": MarkerPayload(marker)}, protocol)
    line = expect_error(capsys, ["bound", model])
    assert "pickle" in line or "neither an ONNX nor a safetensors" in line, line
    assert not marker.exists(), "unpickling ran code from the model file"


def test_torch_zip_checkpoint_with_payload_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pth"
    torch.save({"weight": torch.zeros(2), "evil": MarkerPayload(marker)}, path)
    assert not marker.exists()
    expect_error(capsys, ["inspect", path], "pickle", "does not unpickle")
    assert not marker.exists()


# ============================================================================ ONNX external data
def _outside(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.ones(12, np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "sub").mkdir()
    return folder, outside


def _fifo(folder):
    os.mkfifo(folder / "w.fifo")
    return "w.fifo"


EXTERNAL_CASES = {
    # id: (setup(folder) -> location or (location, offset, length), expected words)
    "absolute-etc-passwd": (lambda f: "/etc/passwd", ["absolute"]),
    "absolute-dev-zero": (lambda f: "/dev/zero", ["absolute"]),
    "dotdot": (lambda f: "../outside.bin", [".."]),
    "dotdot-inside-path": (lambda f: "sub/../../outside.bin", [".."]),
    "backslash-dotdot": (lambda f: "..\\outside.bin", [".."]),
    "symlink-leaving-folder": (lambda f: (f / "link.bin").symlink_to(f.parent / "outside.bin") or "link.bin",
                               ["outside the model's folder"]),
    "symlink-to-dev-zero": (lambda f: (f / "zero.bin").symlink_to("/dev/zero") or "zero.bin",
                            ["outside the model's folder"]),
    "symlinked-subfolder": (lambda f: (f / "up").symlink_to(f.parent) or "up/outside.bin",
                            ["outside the model's folder"]),
    "fifo-in-folder": (_fifo, ["FIFO"]),
    "directory": (lambda f: "sub", ["directory"]),
    "missing-file": (lambda f: "missing.bin", ["does not exist"]),
    "empty-location": (lambda f: "", ["no location"]),
    "nul-in-location": (lambda f: "w\x00.bin", ["location"]),
    "offset-past-end": (lambda f: ((f / "w.bin").write_bytes(b"\0" * 48) and ("w.bin", 4096, None)), ["past the end"]),
    "length-past-end": (lambda f: ((f / "w.bin").write_bytes(b"\0" * 48) and ("w.bin", 0, 4096)), ["past the end"]),
    "negative-offset": (lambda f: ((f / "w.bin").write_bytes(b"\0" * 48) and ("w.bin", -8, None)), ["offset"]),
    "length-not-tensor-size": (lambda f: ((f / "w.bin").write_bytes(b"\0" * 480) and ("w.bin", 0, 8)), ["48 bytes"]),
    "file-shorter-than-tensor": (lambda f: ((f / "w.bin").write_bytes(b"\0" * 20) and "w.bin"), ["48 bytes"]),
}


@pytest.mark.parametrize("case", list(EXTERNAL_CASES))
def test_external_data_is_confined_to_the_models_folder(tmp_path, capsys, case):
    folder, outside = _outside(tmp_path)
    setup, words = EXTERNAL_CASES[case]
    spec = setup(folder)
    location, offset, length = spec if isinstance(spec, tuple) else (spec, None, None)
    path = external_gemm(folder, location, offset=offset, length=length)
    fifo = folder / "w.fifo"
    if fifo.exists():
        with FifoGuard(fifo) as guard:
            expect_error(capsys, ["inspect", path], "external", *words)
        assert not guard.fired
    else:
        expect_error(capsys, ["inspect", path], "external", *words)


def test_external_data_with_a_bad_offset_string(tmp_path, capsys):
    import onnx

    folder, _ = _outside(tmp_path)
    (folder / "w.bin").write_bytes(b"\0" * 48)
    path = external_gemm(folder, "w.bin")
    model = onnx.ModelProto()
    model.ParseFromString(path.read_bytes())
    e = model.graph.initializer[0].external_data.add()
    e.key, e.value = "offset", "abc"
    save_onnx(model, path)
    expect_error(capsys, ["inspect", path], "external", "offset")


def test_external_data_inside_the_folder_still_loads(tmp_path, capsys):
    folder = tmp_path / "m"
    (folder / "weights").mkdir(parents=True)
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    (folder / "weights" / "w.bin").write_bytes(b"\0" * 16 + w.tobytes())
    path = external_gemm(folder, "weights/w.bin", offset=16, length=48)
    code, out, err = run_cli(capsys, ["inspect", path, "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["num_classes"] == 3 and doc["input_shape"] == [4]


# ============================================================================ ONNX declared sizes and shapes
def _dynamic_gemm():
    return gemm_model(in_shape=[1, "D"])


def _huge_initializer(dims):
    model = gemm_model()
    w = model.graph.initializer[0]
    del w.dims[:]
    w.dims.extend(dims)
    w.ClearField("raw_data")
    return model


def _pad_blowup():
    nodes = [helper.make_node("Pad", ["input", "pads"], ["output"], name="pad")]
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 200000, 200000], np.int64), "pads")
    return onnx_model(nodes, [pads], [1, 1, 4, 4], [1, 1, 200004, 200004])


def _conv_map_output():
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["output"], pads=[1, 1, 1, 1], name="conv")]
    return onnx_model(nodes, [w], [1, 1, 8, 8], [1, 2, 8, 8])


def _zero_size_weight():
    model = gemm_model(k=0, w=np.zeros((0, 4), np.float32))
    return model


def _negative_value_info():
    model = gemm_model()
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = -3
    return model


ONNX_CASES = {
    # id: (model builder, extra argv, expected words)
    "huge-declared-input": (lambda: gemm_model(in_shape=[1, 100_000_000_000]), [], ["memory budget"]),
    "huge-input-shape-flag": (_dynamic_gemm, ["--input-shape", "99999999999999999999"], ["memory budget"]),
    "huge-input-shape-3d": (_dynamic_gemm, ["--input-shape", "100000,100000,100000"], ["memory budget"]),
    "input-shape-zero": (_dynamic_gemm, ["--input-shape", "0"], ["positive"]),
    "input-shape-negative": (_dynamic_gemm, ["--input-shape", "-5"], ["positive"]),
    "input-shape-garbage": (_dynamic_gemm, ["--input-shape", "4;4"], ["--input-shape"]),
    "negative-input-dim": (lambda: gemm_model(in_shape=[1, -4]), [], ["negative"]),
    "zero-input-dim": (lambda: gemm_model(in_shape=[1, 0]), [], ["empty"]),
    "negative-output-dim": (_negative_value_info, [], ["negative"]),
    "huge-initializer-no-data": (lambda: _huge_initializer([1_000_000, 1_000_000]), [], ["W"]),
    "overflowing-initializer": (lambda: _huge_initializer([2**62, 2**62]), [], ["W"]),
    "negative-initializer-dims": (lambda: _huge_initializer([-3, 4]), [], ["W", "negative"]),
    "initializer-size-mismatch": (lambda: _huge_initializer([3, 5]), [], ["W"]),
    "zero-size-weight": (_zero_size_weight, [], ["empty"]),
    "pad-to-huge-intermediate": (_pad_blowup, [], ["memory budget"]),
    "output-is-a-map": (_conv_map_output, [], ["[2, 8, 8]", "vector"]),
}


def test_dynamic_batch_axis_written_as_minus_one_still_loads(tmp_path, capsys):
    path = save_onnx(gemm_model(in_shape=[-1, 4]), tmp_path / "model.onnx")
    code, out, err = run_cli(capsys, ["inspect", path, "--json"])
    assert code == 0, err
    assert json.loads(out)["input_shape"] == [4]


@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_crafted_onnx_is_refused_before_allocating(tmp_path, capsys, case):
    build, extra, words = ONNX_CASES[case]
    path = save_onnx(build(), tmp_path / "model.onnx")
    expect_error(capsys, ["inspect", path, *extra], *words)


def test_map_output_is_not_bounded_as_classes(tmp_path, capsys):
    path = save_onnx(_conv_map_output(), tmp_path / "seg.onnx")
    expect_error(capsys, ["bound", path, "--json"], "128 values", "Flatten")


@pytest.mark.parametrize("blob", [b"\x08\x07\x12\x04abc", bytes(range(256)) * 4, b"\xff" * 64],
                         ids=["truncated", "bytes", "ff"])
def test_garbage_onnx(tmp_path, capsys, blob):
    path = tmp_path / "junk.onnx"
    path.write_bytes(blob)
    expect_error(capsys, ["inspect", path], "onnx")


# ============================================================================ safetensors headers
def _st(tmp_path, header, buffer=b"\0" * 48, length=None):
    path = tmp_path / "model.safetensors"
    path.write_bytes(join_safetensors(header, buffer, length))
    return path


def _tensor(dtype="F32", shape=(3, 4), offsets=(0, 48)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


HEADER_CASES = {
    # id: (header, buffer, length override, expected words)
    "length-beyond-file": ({"w": _tensor()}, b"\0" * 48, 10**6, []),
    "length-2^64-1": ({"w": _tensor()}, b"\0" * 48, 2**64 - 1, []),
    "header-not-json": ("{not json at all", b"", None, ["header"]),
    "header-not-utf8": (b"{\xff\xfe}", b"", None, ["header"]),
    "header-entry-not-object": ({"w": 5}, b"\0" * 48, None, ["'w'"]),
    "offsets-out-of-range": ({"w": _tensor(offsets=(0, 10**9))}, b"\0" * 48, None, ["'w'"]),
    "offsets-negative": ({"w": _tensor(offsets=(-48, 0))}, b"\0" * 48, None, ["'w'"]),
    "offsets-reversed": ({"w": _tensor(offsets=(48, 0))}, b"\0" * 48, None, ["'w'"]),
    "offsets-not-ints": ({"w": _tensor(offsets=("0", "48"))}, b"\0" * 48, None, ["'w'"]),
    "dtype-size-mismatch": ({"w": _tensor(dtype="F64")}, b"\0" * 48, None, ["'w'"]),
    "dtype-unknown": ({"w": _tensor(dtype="Q7")}, b"\0" * 48, None, ["'w'", "Q7"]),
    "shape-negative": ({"w": _tensor(shape=(-3, -4))}, b"\0" * 48, None, ["'w'"]),
    "shape-huge": ({"w": _tensor(shape=(2**40, 2**40))}, b"\0" * 48, None, ["'w'"]),
    "shape-not-list": ({"w": {"dtype": "F32", "shape": "3x4", "data_offsets": [0, 48]}}, b"\0" * 48, None, ["'w'"]),
    "overlapping-tensors": ({"a": _tensor(offsets=(0, 48)), "b": _tensor(offsets=(24, 72))}, b"\0" * 72, None,
                            ["overlap"]),
    "gap-between-tensors": ({"a": _tensor(shape=(2,), offsets=(0, 8)), "b": _tensor(shape=(2,), offsets=(16, 24))},
                            b"\0" * 24, None, []),
    "metadata-not-object": ({"__metadata__": [1, 2], "w": _tensor()}, b"\0" * 48, None, ["metadata"]),
    "metadata-not-strings": ({"__metadata__": {"liplt_graph": 5}, "w": _tensor()}, b"\0" * 48, None, ["metadata"]),
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_crafted_safetensors_header(tmp_path, capsys, case):
    header, buffer, length, words = HEADER_CASES[case]
    path = _st(tmp_path, header, buffer, length)
    expect_error(capsys, ["inspect", path, "--arch", "mlp:5"], *words)


def _set_params(**params):
    def edit(desc):
        activation_node(desc)["activation"]["params"] = params
    return edit


def _set_key(key, **params):
    def edit(desc):
        a = activation_node(desc)["activation"]
        a["key"], a["params"] = key, params
    return edit


def _node_field(kind, field, value):
    def edit(desc):
        node = next(n for n in desc["nodes"] if n["kind"] == kind)
        node[field] = value
    return edit


def _linear_tensor(field, key):
    def edit(desc):
        next(n for n in desc["nodes"] if n["kind"] == "linear")["op"]["tensors"][field] = key
    return edit


GRAPH_CASES = {
    # id: (activation module of the saved file, edit of the graph description, expected words)
    "softplus-beta-zero": (nn.Softplus(), _set_params(beta=0.0), ["softplus", "beta"]),
    "softplus-beta-negative": (nn.Softplus(), _set_params(beta=-1.0), ["softplus", "beta"]),
    "softplus-beta-nan": (nn.Softplus(), _set_params(beta="nan"), ["beta"]),
    "softplus-beta-inf": (nn.Softplus(), _set_params(beta="inf"), ["beta"]),
    "leaky-slope-nan": (nn.LeakyReLU(), _set_params(negative_slope="nan"), ["negative_slope"]),
    "leaky-slope-inf": (nn.LeakyReLU(), _set_params(negative_slope="inf"), ["negative_slope"]),
    "elu-alpha-nan": (nn.ELU(), _set_params(alpha="nan"), ["alpha"]),
    "hardtanh-min-nan": (nn.Hardtanh(), _set_key("hardtanh", min_val="nan", max_val=1.0), ["min"]),
    "clip-min-above-max": (nn.Hardtanh(), _set_key("clip", min=2.0, max=1.0), ["min", "max"]),
    "param-not-a-number": (nn.LeakyReLU(), _set_params(negative_slope="abc"), []),
    "param-is-a-list": (nn.LeakyReLU(), _set_params(negative_slope=[1, 2]), []),
    "unknown-activation": (nn.ReLU(), _set_key("frobnicate"), ["frobnicate"]),
    "activation-not-object": (nn.ReLU(), lambda d: activation_node(d).__setitem__("activation", "relu"), []),
    "graph-not-json": (nn.ReLU(), lambda d: "{nope", ["layer-graph"]),
    "graph-is-a-list": (nn.ReLU(), lambda d: [], ["layer-graph"]),
    "nodes-not-a-list": (nn.ReLU(), lambda d: d.__setitem__("nodes", 5), ["layer-graph"]),
    "node-not-object": (nn.ReLU(), lambda d: d["nodes"].append("x"), ["layer-graph"]),
    "negative-node-shape": (nn.ReLU(), _node_field("activation", "shape", [-5]), ["shape"]),
    "huge-input-shape": (nn.ReLU(), _node_field("input", "shape", [10**12]), ["memory budget"]),
    "zero-input-shape": (nn.ReLU(), _node_field("input", "shape", [0]), ["shape"]),
    "output-missing": (nn.ReLU(), lambda d: d.__setitem__("output", "nowhere"), ["nowhere"]),
    "output-not-string": (nn.ReLU(), lambda d: d.__setitem__("output", {"a": 1}), []),
    "missing-tensor-key": (nn.ReLU(), _linear_tensor("weight", "no.such.tensor"), ["no.such.tensor"]),
    "unknown-op-kind": (nn.ReLU(), lambda d: next(n for n in d["nodes"] if n["kind"] == "linear")["op"]
                        .__setitem__("kind", "fft"), ["fft"]),
    "newer-version": (nn.ReLU(), lambda d: d.__setitem__("version", 99), ["version"]),
}


@pytest.mark.parametrize("case", list(GRAPH_CASES))
def test_crafted_layer_graph_metadata(tmp_path, capsys, case):
    activation, edit, words = GRAPH_CASES[case]
    path = edit_graph(liplt_safetensors(tmp_path / "m.safetensors", activation), edit)
    expect_error(capsys, ["bound", path, "--json"], *words)


def test_softplus_beta_zero_gets_no_bound(tmp_path, capsys):
    """β = 0 makes softplus(x)/β infinite everywhere: no finite bound may be reported (was exit 0)."""
    path = edit_graph(liplt_safetensors(tmp_path / "m.safetensors", nn.Softplus()), _set_params(beta=0.0))
    expect_error(capsys, ["certify", path, "--data", _npz4(tmp_path), "--eps", "0.1", "--no-attack"], "beta")


def _npz4(tmp_path):
    path = tmp_path / "d4.npz"
    np.savez(path, x=np.full((4, 4), 0.5, np.float32), y=np.arange(4) % 3)
    return path


def _retensor(path, key, array_bytes, dtype, shape):
    header, buffer = split_safetensors(path.read_bytes())
    begin = len(buffer)
    header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, begin + len(array_bytes)]}
    path.write_bytes(join_safetensors(header, buffer + array_bytes))


@pytest.mark.parametrize(
    "dtype, shape, data, words",
    [("F32", [0, 4], b"", ["empty"]), ("I32", [5, 4], b"\0" * 80, ["floating point"]), ("BOOL", [5, 4], b"\0" * 20, ["floating point"])],
    ids=["zero-size", "int32", "bool"],
)
def test_weight_tensor_of_wrong_kind(tmp_path, capsys, dtype, shape, data, words):
    path = liplt_safetensors(tmp_path / "m.safetensors")
    edit_graph(path, _linear_tensor("weight", "evil.weight"))
    _retensor(path, "evil.weight", data, dtype, shape)
    expect_error(capsys, ["inspect", path], *words)


# ============================================================================ plain safetensors + --arch
@pytest.mark.parametrize(
    "arch, words",
    [("mlp:0", ["positive"]), ("mlp:-5", ["positive"]), ("mlp:100000000000", ["memory budget"]),
     ("mlp:abc", ["integer widths"]), ("mlp:5,0", ["positive"]), ("9Z9", ["unknown architecture"]),
     ("mlp:99999999999999999999999", ["memory budget"])],
)
def test_bad_arch_for_plain_safetensors(tmp_path, capsys, arch, words):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_state().items()}, str(path))
    expect_error(capsys, ["bound", path, "--arch", arch], *words)


@pytest.mark.parametrize(
    "metadata, words",
    [({"input_shape": "100000,100000,100000"}, ["memory budget"]), ({"input_shape": "-1,28,28"}, ["positive"]),
     ({"liplt_format": "99", "liplt_graph": "{}"}, ["format '99'"])],
    ids=["huge-input-shape", "negative-input-shape", "future-format"],
)
def test_crafted_plain_safetensors_metadata(tmp_path, capsys, metadata, words):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_state().items()}, str(path), metadata=metadata)
    expect_error(capsys, ["inspect", path, "--arch", "mlp:5"], *words)


def tiny_state():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 5), nn.ReLU(), nn.Linear(5, 3)).state_dict()


# ============================================================================ normalisation flags
@pytest.mark.parametrize(
    "mean, std, words",
    [("0.5", "-0.5", ["std", "positive"]), ("0.5", "0", ["std", "positive"]), ("0.5", "nan", ["--std", "finite"]),
     ("inf", "0.5", ["--mean", "finite"]), ("0.5", "0.5,0.5", ["--std needs 1 value", "got 2"]), ("0.5", None, ["together"])],
)
def test_bad_normalisation(capsys, mean, std, words):
    argv = ["inspect", EXAMPLE, "--mean", mean] + (["--std", std] if std is not None else [])
    expect_error(capsys, argv, *words)


def test_file_mode_checks_use_stat_not_the_name(tmp_path):
    """The helper names every file type it refuses."""
    from liplt_cli.paths import file_kind

    assert file_kind(stat.S_IFIFO) == "a FIFO (named pipe)" and file_kind(stat.S_IFCHR) == "a character device"
    assert file_kind(stat.S_IFDIR) == "a directory" and file_kind(stat.S_IFREG) == "a regular file"
