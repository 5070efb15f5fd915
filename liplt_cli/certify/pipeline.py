"""One certification run: constants once per model, radii per sample, PGD per ε, one result."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from liplt_cli.certify.attack import AttackSettings, robust_under_attack
from liplt_cli.certify.radius import PairwiseConstants, certified_radii, check_labels, engine_constants, match_inputs
from liplt_cli.certify.result import CertifyResult, LocalCertification
from liplt_cli.certify.sanity import chance_level_warnings, input_range_warnings
from liplt_cli.eps import EpsilonLike, parse_epsilons
from liplt_cli.errors import ArgumentError
from liplt_cli.lipschitz.options import parse_norm
from liplt_cli.notes import warnings_in

if TYPE_CHECKING:  # pragma: no cover
    from liplt_cli.local import LocalSettings

StageProgress = Callable[[str, int, int], None]


def certify(graph, dataset, eps: EpsilonLike | Sequence[EpsilonLike], norm: float | str = 2.0, *,
            constants: PairwiseConstants | None = None, fast: bool = False, attack: bool = True,
            attack_settings: AttackSettings = AttackSettings(), batch_size: int = 256,
            device: str | torch.device = "cpu", model_name: str = "",
            local: "LocalSettings | None" = None, progress: StageProgress | None = None) -> CertifyResult:
    """Certify ``dataset`` (a :class:`~liplt_cli.data.Dataset`) on ``graph`` at each ε in ``eps``.

    The pairwise constants come from ``constants`` when given, else from the engine
    (:func:`~liplt_cli.certify.radius.engine_constants`: sound unless ``fast``).  Radii follow
    eq. 4; PGD (unless ``attack=False``) skips samples already certified with sound constants,
    which PGD cannot break.  ``eps`` takes what ``--eps`` takes: ``"36/255"``, ``"0.5,1.58"``,
    numbers or :class:`~liplt_cli.eps.Epsilon` values; the result keeps each ε's text as given
    (``eps_text``) for display.  With ``local`` (:class:`~liplt_cli.local.LocalSettings`) each
    sample also gets its local radius (:func:`~liplt_cli.local.local_radii`, never below the
    global one; the listed ε are checked exactly).  ``progress(stage, done, total)`` reports each
    stage (``constants: …``, ``radii``, ``local radii``, ``attack``).  The library never prints.
    """
    norm = parse_norm(norm)
    given = parse_epsilons(eps)
    eps = [e.value for e in given]
    if batch_size <= 0:
        raise ArgumentError(f"batch_size must be positive, got {batch_size}")
    start = time.perf_counter()
    graph = graph.detached().to(device)
    check_labels(dataset.y, graph.num_classes, f"the data ({dataset.name})")
    x = match_inputs(dataset.x, graph.input_shape, f"the data ({dataset.name})")
    notes: list[str] = [*warnings_in(graph.notes), *dataset.notes]
    notes += input_range_warnings(given, norm, attack_settings.box, math.prod(graph.input_shape))
    if dataset.num_classes != graph.num_classes:
        notes.append(f"the data has {dataset.num_classes} classes, the model {graph.num_classes} outputs")
    if constants is None:
        stage = (lambda s, d, t: progress(f"constants: {s}", d, t)) if progress else None  # noqa: E731
        constants = engine_constants(graph, norm=norm, fast=fast, progress=stage)
    if constants.norm != norm:
        raise ArgumentError(f"pairwise constants are for the ℓ{constants.norm:g} norm, not ℓ{norm:g}")
    step = (lambda d, t: progress("radii", d, t)) if progress else None  # noqa: E731
    if step:
        step(0, x.shape[0])
    radii = certified_radii(graph, x, dataset.y, constants, batch_size=batch_size, device=device, progress=step)
    local_result = None
    if local is not None:
        if not constants.sound:
            raise ArgumentError("local radii need sound global constants (not estimates)")
        if local.domain is not None and x.numel() and (float(x.min()) < local.domain[0] or float(x.max()) > local.domain[1]):
            raise ArgumentError(f"the data lies outside the input range [{local.domain[0]:g}, {local.domain[1]:g}]")
        from liplt_cli.local import local_radii

        step = (lambda d, t: progress("local radii", d, t)) if progress else None  # noqa: E731
        if step:
            step(0, x.shape[0])
        local_result = local_radii(graph, x, dataset.y, norm, constants.matrix, list(eps), domain=local.domain,
                                   tolerance=local.tolerance, options=local.options, batch_size=local.batch_size,
                                   device=device, refine=local.refine, progress=step)
    pgd_robust = None
    attack_seconds = 0.0
    if attack:
        skip = None
        if constants.sound:
            skip = torch.stack([radii.radius > e for e in eps])
            if local_result is not None:
                skip = skip | torch.stack([local_result.certified(e) for e in eps])
            if bool(skip.any()):
                counts = ", ".join(f"{int(k.sum())} at ε={e.text}" for k, e in zip(skip, given))
                notes.append(f"PGD skipped the samples already certified ({counts}): sound radii mean no attack can break them")
        step = (lambda d, t: progress("attack", d, t)) if progress else None  # noqa: E731
        if step:
            step(0, len(eps) * x.shape[0])
        pgd_robust, attack_seconds = robust_under_attack(graph, x, dataset.y, list(eps), norm, attack_settings,
                                                         batch_size=batch_size, device=device, skip=skip,
                                                         progress=step)
    notes += chance_level_warnings(radii.prediction, dataset.y, graph.num_classes)
    return CertifyResult(
        model=model_name,
        data=dataset.summary(),
        norm=norm,
        eps=tuple(eps),
        eps_text=tuple(e.text for e in given),
        index=dataset.index.clone(),
        label=dataset.y.clone(),
        prediction=radii.prediction,
        radius=radii.radius,
        pgd_robust=pgd_robust,
        constants_method=constants.method,
        guarantee=constants.guarantee,
        pairwise_mean=constants.mean_off_diagonal,
        constants_notes=constants.notes,
        attack=attack_settings.to_dict() | {"norm": norm} if attack else None,
        timings={"constants": constants.seconds, "radii": radii.seconds, "attack": attack_seconds,
                 "local": 0.0 if local_result is None else local_result.seconds,
                 "total": time.perf_counter() - start},
        device=str(device),
        notes=tuple(notes),
        local=None if local_result is None else LocalCertification.of(local_result, local, eps),
    )
