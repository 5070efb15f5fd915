"""Errors raised by the loader speak the library's terms: they name the value, the rule and the
library parameter (``input_shape``, ``mean``, ``std``, ``arch``), never a command-line flag; the
command line shows its own flag in the same place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from safetensors.torch import save_file

from liplt_cli.errors import ArgumentError, InputShapeError, LipltError, ModelLoadError
from liplt_cli.load import load_model, save_safetensors
from liplt_cli.train.architecture import architecture
from tests.hostile import expect_error, gemm_model, save_onnx, tiny_module

pytestmark = pytest.mark.usefixtures("single_thread")

LOAD = Path(__file__).resolve().parents[1] / "liplt_cli" / "load"
FLAG = re.compile(r"--[a-z]")


def test_no_string_in_the_loader_names_a_flag():
    found = []
    for path in sorted(LOAD.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and FLAG.search(node.value):
                found.append(f"{path.name}:{node.lineno}: {node.value.strip()[:80]}")
    assert found == []


@pytest.fixture
def dynamic_onnx(tmp_path):
    return save_onnx(gemm_model(in_shape=[1, "D"]), tmp_path / "dynamic.onnx")


@pytest.fixture
def plain_file(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_module().state_dict().items()}, str(path))
    return path


def _cases(dynamic_onnx, plain_file, liplt_file):
    """(library call, error class, words of the library message, CLI argv, words of the CLI message)."""
    return [
        (lambda: load_model(dynamic_onnx), InputShapeError, ["dynamic", "pass input_shape"],
         ["inspect", str(dynamic_onnx)], ["dynamic", "pass --input-shape"]),
        (lambda: load_model(dynamic_onnx, input_shape=(2, 2)), InputShapeError, ["input_shape [2, 2] has 2"],
         ["inspect", str(dynamic_onnx), "--input-shape", "2,2"], ["--input-shape [2, 2] has 2"]),
        (lambda: load_model(liplt_file, input_shape=(9,)), InputShapeError, ["input_shape [9] contradicts"],
         ["inspect", str(liplt_file), "--input-shape", "9"], ["--input-shape [9] contradicts"]),
        (lambda: load_model(plain_file), ModelLoadError, ["architecture is unknown", "arch 4C3F"],
         ["inspect", str(plain_file)], ["architecture is unknown", "--arch 4C3F"]),
        (lambda: load_model(plain_file, arch=architecture("mlp:7")), ModelLoadError, ["do not fit arch mlp:7"],
         ["inspect", str(plain_file), "--arch", "mlp:7"], ["do not fit --arch mlp:7"]),
        (lambda: load_model(liplt_file, mean=[0.5]), ArgumentError, ["mean and std go together"],
         ["inspect", str(liplt_file), "--mean", "0.5"], ["--mean and --std go together"]),
        (lambda: load_model(liplt_file, mean=[0.5], std=[0.0]), ArgumentError,
         ["std must be positive", "got 0 for channel 0"],
         ["inspect", str(liplt_file), "--mean", "0.5", "--std", "0"], ["--std must be positive", "got 0 for channel 0"]),
        (lambda: load_model(liplt_file, mean=[0.5], std=[1.0, 1.0]), ArgumentError,
         ["std needs 1 value (the input [4] has no channel axis)", "got 2"],
         ["inspect", str(liplt_file), "--mean", "0.5", "--std", "1,1"], ["--std needs 1 value", "got 2"]),
    ]


def test_library_messages_name_parameters_and_the_cli_names_flags(capsys, tmp_path, dynamic_onnx, plain_file):
    liplt_file = tmp_path / "liplt.safetensors"
    save_safetensors(tiny_module(), liplt_file, input_shape=(4,))
    for call, kind, library_words, argv, cli_words in _cases(dynamic_onnx, plain_file, liplt_file):
        with pytest.raises(kind) as info:
            call()
        message = str(info.value)
        assert not FLAG.search(message), message
        for word in library_words:
            assert word in message, (word, message)
        line = expect_error(capsys, argv, *cli_words)
        assert "{" not in line, line


def test_an_error_renamed_for_the_cli_keeps_its_class_and_attributes():
    error = InputShapeError("{input_shape} [3] does not fit", parameters=("input_shape",))
    renamed = error.renamed({"input_shape": "--input-shape"})
    assert type(renamed) is InputShapeError and renamed.exit_code == error.exit_code
    assert (str(error), str(renamed)) == ("input_shape [3] does not fit", "--input-shape [3] does not fit")
    assert renamed.parameters == ("input_shape",)
    plain = LipltError("no parameter {here}")
    assert str(plain.renamed({"here": "x"})) == "no parameter {here}"


def test_an_architecture_name_alone_is_refused_with_a_hint(plain_file):
    with pytest.raises(TypeError, match="Architecture"):
        load_model(plain_file, arch="4C3F")
