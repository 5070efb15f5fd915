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
The loader side is always one handler, registered where it is written (nothing else in
``liplt_cli/load`` changes: the walk, the dispatch and the supported list follow by themselves):

* a **new linear operator**: its op class in :mod:`liplt_cli.graph.linear_ops` (forward map,
  linear part, adjoint, norms; plus its entry in :mod:`liplt_cli.graph.serialize` if graphs
  holding it are to be saved as liplt safetensors), and one handler in the family module here
  (e.g. :mod:`~liplt_cli.load.ops.linear`) that builds it and emits it with ``c.builder.linear(...)``;
* a **new activation**: its entry in :func:`liplt_cli.graph.make_activation`
  (:mod:`liplt_cli.graph.slopes`, with its slopes α, β), and one line
  ``h_name = _simple("name", "Label", modules=..., functions=..., methods=...)`` in
  :mod:`~liplt_cli.load.ops.activations` (a handler calling ``act(c, "name", param=...)`` when it
  has parameters).  Optionally, its formula in :func:`liplt_cli.load.op_formulas.activation_formula`
  lets the elementwise reader recognise it when an exporter spells it out in several ops.

Each handler is decorated with ``@converts(label=..., modules=/functions=/methods=/onnx=...)``
(:mod:`liplt_cli.load.registry`); unsupported-op errors list the new label at once, and
``python scripts/supported_ops.py`` rewrites the README's list (``tests/test_load_structure.py``
fails until it is rerun).  A new family module is added to the imports below.
"""

from __future__ import annotations

from liplt_cli.load.ops import activations, arithmetic, linear, pooling, shape

__all__ = ["activations", "arithmetic", "linear", "pooling", "shape"]
