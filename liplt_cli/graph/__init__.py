"""The layer graph (IR): node kinds, linear operators, activations with slope bounds."""

from liplt_cli.graph.graph import LayerGraph, describe_node, prepend_normalization
from liplt_cli.graph.linear_ops import Affine, Conv, ConvTranspose, Dense, LinearOp, Pad, Permute, Reshape
from liplt_cli.graph.nodes import (
    ActivationNode,
    BlockNode,
    ConcatNode,
    InputNode,
    LinearNode,
    MaxPool,
    Node,
    SumNode,
    node_kind,
)
from liplt_cli.graph.slopes import Activation, make_activation
from liplt_cli.graph.walk import GraphWalk, NodeRecords, WalkError

__all__ = [
    "Activation", "ActivationNode", "Affine", "BlockNode", "ConcatNode", "Conv", "ConvTranspose",
    "Dense", "GraphWalk", "InputNode", "LayerGraph", "LinearNode", "LinearOp", "MaxPool", "Node",
    "NodeRecords", "Pad", "Permute", "Reshape", "SumNode", "WalkError", "describe_node",
    "make_activation", "node_kind", "prepend_normalization",
]
