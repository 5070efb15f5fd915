"""Local LipLT: certificates and Lipschitz constants valid on a ball around each sample.

* :func:`local_radii` -- per-sample local radii (bisection on the local certificate);
* :func:`margin_bounds` -- lower bounds of the margins on a batch of balls;
* :func:`analyse_ball` -- sound per-neuron intervals, slopes and the local recursion;
* :func:`local_bounds` -- local Lipschitz constants (global, per class, pairwise) at given inputs.
"""

from liplt_cli.local.analysis import BallAnalysis, LocalOptions, analyse_ball
from liplt_cli.local.ball import Ball
from liplt_cli.local.bounds import LocalBoundResult, local_bounds
from liplt_cli.local.certificate import LocalRadii, LocalSettings, MarginBounds, local_radii, margin_bounds

__all__ = ["Ball", "BallAnalysis", "LocalBoundResult", "LocalOptions", "LocalRadii", "LocalSettings", "MarginBounds", "analyse_ball", "local_bounds", "local_radii",
           "margin_bounds"]
