"""The graph walk: dispatch on node kinds, values freed after their last use, failures named."""

from __future__ import annotations

import pytest
import torch

from liplt_cli.errors import GraphError
from liplt_cli.graph.evaluate import Evaluation
from liplt_cli.graph.walk import GraphWalk, NodeRecords, WalkError
from liplt_cli.lipschitz.propagation import forward_pass
from liplt_cli.lipschitz.structure import LT, analyse
from tests.oracle import concat_net, convnet, residual_mlp


def _handler(kind):
    def record(self, node, *args):
        return (kind, len(args))

    return record


class _Kinds(NodeRecords):
    """Each kind's handler records its own name and the number of value arguments it got."""

    kinds = ("input", "linear", "sum", "concat", "activation", "block")
    input, linear, sum, concat, activation, block = map(_handler, kinds)


@pytest.mark.parametrize("graph", [convnet(pool=True), residual_mlp(), concat_net()],
                         ids=["conv", "residual", "concat"])
def test_dispatch_visits_every_node_in_order_with_its_inputs(graph):
    records = _Kinds(graph).run().records
    assert records == [(n.kind, len(n.inputs)) for n in graph.nodes]


class _Watching(Evaluation):
    """Evaluation that records which values are alive after each node."""

    def __init__(self, graph, x):
        super().__init__(graph, x)
        self.alive: list[set[str]] = []

    def finished(self, pos):
        self.alive.append(set(self.env))
        return False


def test_values_are_freed_after_their_last_use_and_the_output_kept():
    graph = residual_mlp()
    walk = _Watching(graph, torch.zeros(2, *graph.input_shape, dtype=graph.dtype)).run()
    last = graph.last_use()
    for pos, alive in enumerate(walk.alive):
        expected = {n.name for n in graph.nodes[: pos + 1] if last[n.name] > pos}
        assert alive == expected
    assert set(walk.env) == {graph.output}
    assert torch.equal(walk.env[graph.output], graph.evaluate(torch.zeros(2, *graph.input_shape, dtype=graph.dtype)))


def _broken(graph):
    """The graph with the weight of its second dense layer of the wrong width."""
    from dataclasses import replace

    nodes = list(graph.nodes)
    i = [k for k, n in enumerate(nodes) if n.kind == "linear"][1]
    op = nodes[i].op
    nodes[i] = replace(nodes[i], op=replace(op, weight=op.weight[:, :-1]))
    return type(graph)(tuple(nodes), graph.output), nodes[i].name


def test_evaluation_failure_names_the_node():
    graph, name = _broken(residual_mlp())
    with pytest.raises(GraphError, match=f"while evaluating node '{name}' \\(linear\\)"):
        graph.evaluate(torch.zeros(1, *graph.input_shape, dtype=graph.dtype))
    with pytest.raises(GraphError, match=f"node '{name}' \\(linear\\) cannot run"):
        graph.validate()


def test_engine_walk_failure_names_the_node_as_an_internal_error():
    graph, name = _broken(residual_mlp())
    structure = analyse(graph)
    eye = torch.eye(5, dtype=graph.dtype)
    with pytest.raises(WalkError, match=f"node '{name}' \\(linear\\)") as info:
        forward_pass(structure, LT, [("t", "x", eye)], {"t": {graph.output}}, lambda *a: None)
    assert not isinstance(info.value, GraphError)  # a bug of ours, not an error of the user's input


def test_a_kind_without_handler_is_a_named_failure():
    graph = convnet(pool=True)

    class NoBlocks(GraphWalk):
        def input(self, node):
            return 0

        def linear(self, node, x):
            return x

        activation = linear

    with pytest.raises(WalkError, match="\\(block\\)"):
        NoBlocks(graph).run()


def test_reverse_walk_accumulates_every_user_before_visiting_a_node():
    graph = residual_mlp(coefficients=(1.0, -0.5))

    class PathCount(GraphWalk):
        """Number of paths from each node to the output, counted backwards."""

        reverse = True

        def input(self, node, v):
            self.at_input = v
            return ()

        def linear(self, node, v):
            return (v,)

        sum = concat = activation = block = lambda self, node, v: [v] * len(node.inputs)

    walk = PathCount(graph)
    walk.env[graph.output] = 1
    walk.run()
    forward = {graph.nodes[0].name: 1}
    for n in graph.nodes[1:]:
        forward[n.name] = sum(forward[i] for i in n.inputs)
    assert walk.at_input == forward[graph.output]
