"""ε parsing (``parse_eps``) and its errors through ``liplt certify``."""

from __future__ import annotations

import math

import pytest

from liplt_cli.cli.app import run
from liplt_cli.cli.options import parse_eps
from liplt_cli.errors import ArgumentError


@pytest.mark.parametrize(
    "text, want",
    [
        ("36/255", [36 / 255]),
        ("1.58", [1.58]),
        ("0.1412", [0.1412]),
        ("0.5,1.0,1.58", [0.5, 1.0, 1.58]),
        (" 36/255 , 72/255 ", [36 / 255, 72 / 255]),
        ("0", [0.0]),
        ("1e-2", [0.01]),
    ],
)
def test_parse_eps_values(text: str, want: list[float]) -> None:
    got = parse_eps(text)
    assert len(got) == len(want) and all(math.isclose(g, w, rel_tol=1e-15) for g, w in zip(got, want))


@pytest.mark.parametrize(
    "text, message",
    [
        ("36/0", "divides by zero"),
        ("abc", "not a number"),
        ("-0.5", "non-negative"),
        ("0.5,-1", "non-negative"),
        ("inf", "finite"),
        ("nan", "finite"),
        ("1/2/3", "not a number"),
        (",", "no ε"),
    ],
)
def test_parse_eps_errors(text: str, message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        parse_eps(text)


@pytest.mark.parametrize("text, message", [("36/0", "divides by zero"), ("abc", "not a number"), ("-1", "non-negative")])
def test_bad_eps_exits_2_through_certify(text: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["certify", "--eps", text, "--limit", "5", "--no-attack"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
