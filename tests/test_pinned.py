"""Every pinned number is reproduced bit for bit (see :mod:`tests.pinned` for what and why).

A failure names the first differing entry, e.g. ``bound[...].methods.liplt.pairwise[3][7]``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import pinned

EXPECTED = json.loads(pinned.FIXTURE.read_text())


def _first_difference(expected: Any, actual: Any, path: str = "") -> str | None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        if set(expected) != set(actual):
            return f"{path}: keys {sorted(set(expected) ^ set(actual))} differ"
        for key in expected:
            found = _first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return f"{path}: length {len(expected)} != {len(actual)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            found = _first_difference(e, a, f"{path}[{i}]")
            if found:
                return found
        return None
    if type(expected) is not type(actual) or expected != actual:
        return f"{path}: pinned {expected!r}, got {actual!r}"
    return None


def assert_pinned(section: str, key: str, actual: Any) -> None:
    expected = EXPECTED[section][key]
    difference = _first_difference(expected, pinned.normalised(actual), f"{section}[{key!r}]")
    assert difference is None, difference


BOUND_CASES = [(m, n, mode) for m in pinned.MODELS for n in pinned.NORMS for mode in ("sound", "fast")]


@pytest.mark.parametrize("model, norm, mode", BOUND_CASES, ids=[" ".join(c) for c in BOUND_CASES])
def test_liplt_bound_json_is_pinned(model, norm, mode, single_thread):
    assert_pinned("bound", f"{model} {norm} {mode}", pinned.bound_case(model, norm, mode))


def test_engine_on_small_graphs_is_pinned(single_thread):
    actual = pinned.engine_cases()
    for key, value in actual.items():
        assert_pinned("engine", key, value)
    assert set(actual) == set(EXPECTED["engine"])


@pytest.mark.parametrize("model", pinned.TRAINING_MODELS)
@pytest.mark.parametrize("method", ["liplt", "naive"])
def test_training_bound_tensor_is_pinned(model, method, single_thread):
    assert_pinned("training", f"{model} {method}", pinned.training_case(model, method))


def test_refine_is_pinned(single_thread):
    actual = pinned.refine_cases()
    for key, value in actual.items():
        assert_pinned("refine", key, value)
    assert set(actual) == set(EXPECTED["refine"])


def test_lipsdp_chains_are_pinned(single_thread):
    actual = pinned.lipsdp_cases()
    for key, value in actual.items():
        assert_pinned("lipsdp", key, value)
    assert set(actual) == set(EXPECTED["lipsdp"])


def test_evaluation_serialisation_and_inspect_are_pinned(single_thread):
    actual = pinned.graph_cases()
    for key, value in actual.items():
        assert_pinned("graph", key, value)
    assert set(actual) == set(EXPECTED["graph"])


@pytest.mark.slow
@pytest.mark.parametrize("model, norm", [(m, n) for m in pinned.MODELS for n in pinned.NORMS])
def test_liplt_bound_json_at_full_defaults_is_pinned(model, norm, single_thread):
    assert_pinned("bound_full", f"{model} {norm} sound-full", pinned.bound_case(model, norm, "sound-full"))
