"""Certified radii (eq. 4), certified / PGD accuracy and the CI gate of ``liplt certify``."""

from liplt_cli.certify.attack import AttackSettings, pgd, robust_under_attack
from liplt_cli.certify.pipeline import certify
from liplt_cli.certify.radius import (
    PairwiseConstants,
    certified_accuracy,
    certified_radii,
    engine_constants,
    radii_from_logits,
)
from liplt_cli.certify.result import CertifyResult, Gate

__all__ = [
    "AttackSettings", "CertifyResult", "Gate", "PairwiseConstants", "certified_accuracy", "certified_radii",
    "certify", "engine_constants", "pgd", "radii_from_logits", "robust_under_attack",
]
