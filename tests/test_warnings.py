"""No silent surprises: what makes the numbers mean something else is a ``warning:`` line on stderr
and an entry in the JSON ``notes`` (the library returns the notes; the command line prints them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from liplt_cli.cli.app import run
from liplt_cli.data import load_dataset
from liplt_cli.lipschitz import compute_bounds
from liplt_cli.load import load_model
from liplt_cli.notes import WarningNote, warnings_in
from tests.conftest import export_onnx
from tests.test_data import write_mnist

EXAMPLE = "examples/mlp_relu.onnx"
SHIPPED = "liplt_cli/models/mnist_default.safetensors"


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict, list[str]]:
    """``run(argv + --json)`` → (exit code, JSON document, warning lines on stderr)."""
    code = run([*argv, "--json"])
    cap = capsys.readouterr()
    warned = [ln[len("warning: "):] for ln in cap.err.splitlines() if ln.startswith("warning: ")]
    return code, json.loads(cap.out), warned


def _warned_and_noted(doc: dict, warned: list[str], *words: str) -> None:
    hits = [w for w in warned if all(x in w for x in words)]
    assert len(hits) == 1, warned
    assert hits[0] in doc["notes"] and hits[0] in doc["warnings"]


@pytest.fixture(scope="module")
def softmax_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10),
                                torch.nn.Softmax(dim=1))
    return export_onnx(model, (1, 28, 28), tmp_path_factory.mktemp("soft") / "soft.onnx")


def test_library_marks_the_stripped_softmax_as_a_warning(softmax_model: Path) -> None:
    graph = load_model(softmax_model)
    (note,) = warnings_in(graph.notes)
    assert isinstance(note, WarningNote) and "stripped final Softmax" in note
    assert "stripped final Softmax" in compute_bounds(graph).to_dict()["notes"][0]


@pytest.mark.parametrize("command", [["bound"], ["certify", "--limit", "20", "--no-attack"]])
def test_stripped_softmax_is_warned_by_bound_and_certify(command, softmax_model, capsys) -> None:
    code, doc, warned = _run(capsys, [command[0], str(softmax_model), *command[1:]])
    assert code == 0
    _warned_and_noted(doc, warned, "stripped final Softmax", "logits")


def test_clean_accuracy_at_chance_level_is_warned(capsys) -> None:
    code, doc, warned = _run(capsys, ["certify", EXAMPLE, "--limit", "60", "--no-attack"])  # random weights
    assert code == 0 and doc["clean_accuracy"] <= 0.15
    _warned_and_noted(doc, warned, "chance level", "10 classes", "normalisation")


def test_a_trained_model_gets_no_chance_warning(capsys) -> None:
    code, doc, warned = _run(capsys, ["certify", SHIPPED, "--limit", "60", "--no-attack"])
    assert code == 0 and doc["clean_accuracy"] > 0.5
    assert warned == [] and doc["warnings"] == []


def test_eps_beyond_the_input_range_is_warned(capsys) -> None:
    code, doc, warned = _run(capsys, ["certify", SHIPPED, "--limit", "20", "--no-attack", "--eps", "0.1,8", "--norm", "inf"])
    assert code == 0
    _warned_and_noted(doc, warned, "ε = 8", "larger than the input range", "[0, 1]")
    assert not any("ε = 0.1 " in w for w in warned)


def test_eps_within_the_l2_diameter_is_not_warned(capsys) -> None:
    code, doc, warned = _run(capsys, ["certify", SHIPPED, "--limit", "20", "--no-attack", "--eps", "27"])  # √784 = 28
    assert code == 0 and warned == []


def test_arch_with_an_onnx_file_is_warned(capsys) -> None:
    code, doc, warned = _run(capsys, ["bound", EXAMPLE, "--arch", "4C3F"])
    assert code == 0
    _warned_and_noted(doc, warned, "architecture 4C3F ignored", "ONNX")


def test_arch_with_a_liplt_file_is_warned(capsys) -> None:
    code, doc, warned = _run(capsys, ["certify", SHIPPED, "--arch", "mlp:10", "--limit", "20", "--no-attack"])
    assert code == 0
    _warned_and_noted(doc, warned, "architecture mlp:10 ignored", "liplt file")


def test_split_val_on_mnist_is_warned(tmp_path, capsys) -> None:
    write_mnist(tmp_path / "mnist", n=30)
    argv = ["certify", SHIPPED, "--data", "mnist", "--data-dir", str(tmp_path), "--split", "val", "--no-attack"]
    code, doc, warned = _run(capsys, argv)
    assert code == 0 and doc["samples"] == 30
    _warned_and_noted(doc, warned, "MNIST has no validation split", "test split")


@pytest.mark.parametrize("extra, words", [
    (["--split", "test"], ("embedded MNIST sample holds training images", "'test'")),
    (["--data-dir", "."], ("data directory", "built in")),
])
def test_what_the_embedded_sample_ignores_is_warned(extra, words, capsys) -> None:
    code, doc, warned = _run(capsys, ["certify", SHIPPED, "--limit", "20", "--no-attack", *extra])
    assert code == 0
    _warned_and_noted(doc, warned, *words)


def test_library_dataset_notes(tmp_path) -> None:
    write_mnist(tmp_path / "mnist", n=5)
    assert load_dataset("mnist", data_dir=tmp_path).notes == ()
    assert load_dataset("embedded", split="train", limit=5).notes == ()
    (note,) = load_dataset("mnist", data_dir=tmp_path, split="val").notes
    assert isinstance(note, WarningNote)


@pytest.mark.parametrize("argv, words", [
    (["bound", EXAMPLE, "--iterations", "5"], ("--iterations 5 is ignored without --fast",)),
    (["bound", EXAMPLE, "--fast", "--explicit-budget", "1e6"], ("--explicit-budget is ignored with --fast",)),
    (["certify", SHIPPED, "--limit", "20", "--no-attack", "--attack-steps", "5"], ("--attack-steps", "--no-attack")),
    (["certify", SHIPPED, "--limit", "20", "--no-attack", "--fast", "--min-certified", "0"], ("--min-certified", "--fast")),
    (["compare", EXAMPLE, "--methods", "liplt", "--samples", "8"], ("--samples", "without the lower method")),
    (["compare", EXAMPLE, "--methods", "liplt", "--lipsdp-max-neurons", "9"], ("--lipsdp-max-neurons",)),
])
def test_ignored_flags_are_warned(argv, words, capsys) -> None:
    code, doc, warned = _run(capsys, argv)
    assert code == 0
    _warned_and_noted(doc, warned, *words)


def test_a_plain_run_has_no_warning(capsys) -> None:
    code, doc, warned = _run(capsys, ["bound", EXAMPLE])
    assert code == 0 and warned == [] and doc["notes"] == [] and doc["warnings"] == []
