"""The handlers that map fx calls onto layer-graph nodes, one module per op family.

* :mod:`~liplt_cli.load.ops.linear` -- Dense (Linear, Gemm, MatMul), Conv, ConvTranspose, BatchNorm;
* :mod:`~liplt_cli.load.ops.pooling` -- average pooling, spatial means, MaxPool;
* :mod:`~liplt_cli.load.ops.shape` -- reshape, permute, pad, concat, identity, dropout, casts;
* :mod:`~liplt_cli.load.ops.arithmetic` -- sums of tensors, affine maps by constants;
* :mod:`~liplt_cli.load.ops.activations` -- slope-restricted activations, a final Softmax.

Each handler registers itself in :mod:`liplt_cli.load.registry` with ``@converts(...)`` where
it is defined; importing this package imports every family, so the registry is complete.
:mod:`~liplt_cli.load.ops.call` defines what a handler receives.

Adding an operator
------------------
A new linear operator: its op class in :mod:`liplt_cli.graph.linear_ops` (forward map, adjoint,
norm), plus one handler in the family module here that builds it and emits it with
``c.cv.linear(...)``.  A new activation: its entry in :func:`liplt_cli.graph.make_activation`
(:mod:`liplt_cli.graph.slopes`, with its slopes α, β), plus one handler in
:mod:`~liplt_cli.load.ops.activations` calling ``act(c, "name")``.  Either way the handler is
decorated with ``@converts(label=..., modules=/functions=/methods=/onnx=...)``; the supported
list in errors follows by itself, and ``python scripts/supported_ops.py`` rewrites the README's
list (a test fails until it is rerun).  A new family module is added to the imports below.
"""

from __future__ import annotations

from liplt_cli.load.ops import activations, arithmetic, linear, pooling, shape

__all__ = ["activations", "arithmetic", "linear", "pooling", "shape"]
