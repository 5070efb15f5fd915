"""liplt: guaranteed Lipschitz bounds, certified radii and CRM training for classifiers.

Library entry points (the CLI is a thin layer over these):

* :func:`liplt_cli.load.load_model` -- ONNX / safetensors / ``nn.Module`` → :class:`LayerGraph`
* :func:`liplt_cli.lipschitz.compute_bounds` -- naive and LipLT Lipschitz bounds
"""

__version__ = "0.1.0"
