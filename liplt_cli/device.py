"""Where to compute, decided once: ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` → a torch device string."""

from __future__ import annotations

import os

from liplt_cli.errors import ArgumentError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a CUDA device is present, else ``cpu``; ``cuda`` without one is an error.

    Under ``torchrun`` (``LOCAL_RANK`` set) a plain ``cuda`` becomes this process's GPU ``cuda:N``.
    ``cuda:N`` is accepted as given.  Errors name the value (parameter ``device``), so the command
    line can show its flag in its place.
    """
    import torch

    value = str(device)
    if value == "auto":
        value = "cuda" if torch.cuda.is_available() else "cpu"
    if value == "cuda" or value.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ArgumentError(
                f"{{device}} '{value}' was asked for but no CUDA device is available", parameters=("device",)
            )
        if value == "cuda" and "LOCAL_RANK" in os.environ:
            value = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    elif value != "cpu":
        raise ArgumentError(
            f"unknown {{device}} '{value}'; use {', '.join(DEVICE_CHOICES)} or cuda:N", parameters=("device",)
        )
    return value
