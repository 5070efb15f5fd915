"""Model loaders: everything becomes a :class:`~liplt_cli.graph.LayerGraph`.

* :func:`graph_from_module` -- any torch.fx-traceable ``nn.Module`` (shares its parameters);
* :func:`load_model` -- an ONNX file or a liplt safetensors file, recognised by content;
* :func:`save_safetensors` -- weights plus the layer graph's description in one file.
"""

from liplt_cli.load.fx import graph_from_module

__all__ = ["graph_from_module"]
