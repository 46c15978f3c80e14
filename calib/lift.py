"""Graph surgery of the pooled Q/DQ form (:data:`calib.qdq.POOLED_FORM`): move each activation's Q/DQ pair from
the input of the layer that reads it up to the tensor the value is made in, above max-pooling and reshapes.

``quantize_static`` writes the tensorrt form (``Relu -> MaxPool -> Q -> DQ -> Conv``); :func:`lift_pairs`
turns it into ``Relu -> Q -> DQ -> MaxPool -> Conv`` and adds a pair on the input of each AveragePool whose
result reaches a quantized layer. Scales and zero-points are given (computed from the ranges of the tensors the
pairs sit on), so the surgery never guesses one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np


def _readers(graph) -> dict[str, list]:
    readers: dict[str, list] = {}
    for n in graph.node:
        for t in dict.fromkeys(n.input):
            if t:
                readers.setdefault(t, []).append(n)
    return readers


def lifted_tensor(model, tensor: str, through: Iterable[str]) -> str:
    """Where an activation's Q/DQ pair goes when lifted above ``through`` ops: walk up from ``tensor`` while
    its producer is one of them and every tensor on the way is read by that one node only (a tensor read twice
    keeps its pair, so that no other reader changes) and is not a graph output.
    """
    through = set(through)
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    readers = _readers(graph)
    outputs = {o.name for o in graph.output}
    while True:
        node = producer.get(tensor)
        if node is None or node.op_type not in through or len(readers.get(tensor, [])) != 1 or tensor in outputs:
            return tensor
        upstream = node.input[0]
        if len(readers.get(upstream, [])) != 1 or upstream in outputs:
            return tensor
        tensor = upstream


def pooled_dq(producer: Mapping, tensor: str, through: Iterable[str]):
    """The DequantizeLinear whose output reaches ``tensor`` through ``through`` ops only (or ``None``)."""
    through = set(through)
    node = producer.get(tensor)
    while node is not None and node.op_type in through:
        node = producer.get(node.input[0])
    return node if node is not None and node.op_type == "DequantizeLinear" else None


def lift_pairs(
    path: str | Path,
    points: Mapping[str, str],
    params: Mapping[str, tuple[np.float32, np.ndarray]],
    through: Iterable[str],
    pooled_inputs: Iterable[str] = (),
) -> None:
    """Rewrite the Q/DQ ONNX at ``path`` in place: each pair on a tensor ``x`` of ``points`` moves up to
    ``points[x]`` (above ``through`` ops); each ``pooled_inputs`` op whose result reaches a quantized layer gets
    a pair on its input, lifted the same way, with ``params[tensor]`` (its scale and zero-point).

    Raises:
        ValueError: the graph is not the Q/DQ graph the points were computed for.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    readers = _readers(graph)

    def chain_head(top: str, bottom: str):
        """The node that reads ``top`` on the way down to ``bottom`` (the first op the pair will feed)."""
        node = producer[bottom]
        while node.input[0] != top:
            node = producer[node.input[0]]
        return node

    for x, top in points.items():
        if top == x:
            continue
        pair = [r for r in readers.get(x, []) if r.op_type == "QuantizeLinear"]
        if not pair:  # this layer is left in float, or x is an input of a pooled op (added below)
            continue
        q = pair[0]
        (dq,) = readers[q.output[0]]
        for reader in readers[dq.output[0]]:
            reader.input[list(reader.input).index(dq.output[0])] = x
        head = chain_head(top, x)
        head.input[0] = dq.output[0]
        q.input[0] = top

    producer = {o: n for n in graph.node for o in n.output}
    readers = _readers(graph)
    through = set(through) | set(pooled_inputs)
    for node in [n for n in graph.node if n.op_type in set(pooled_inputs)]:
        if not _reaches_quantized_layer(node, readers, producer, through):
            continue
        x = node.input[0]
        top = points.get(x, x)
        head = chain_head(top, x) if top != x else node
        name = f"{top}_pooled"
        scale = numpy_helper.from_array(np.array(params[top][0], dtype=np.float32), f"{name}_scale")
        zero = numpy_helper.from_array(np.asarray(params[top][1]), f"{name}_zero_point")
        graph.initializer.extend([scale, zero])
        q = helper.make_node("QuantizeLinear", [top, scale.name, zero.name], [f"{name}_q"], name=f"{name}_Q")
        dq = helper.make_node(
            "DequantizeLinear", [q.output[0], scale.name, zero.name], [f"{name}_dq"], name=f"{name}_DQ"
        )
        graph.node.extend([q, dq])
        head.input[0] = f"{name}_dq"
    _toposort(graph)
    onnx.save(model, str(path))


def _reaches_quantized_layer(node, readers, producer, through: set[str]) -> bool:
    """Whether ``node``'s result flows (read once at each step, through ``through`` ops) into a weighted layer
    whose weight is quantized: a pair there would feed int8 into a float layer for nothing."""
    tensor = node.output[0]
    for _ in range(len(producer) + 1):
        nxt = readers.get(tensor, [])
        if len(nxt) != 1:
            return False
        reader = nxt[0]
        if reader.op_type in ("Conv", "Gemm", "MatMul"):
            weight = producer.get(reader.input[1]) if len(reader.input) > 1 else None
            return weight is not None and weight.op_type == "DequantizeLinear"
        if reader.op_type not in through and reader.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            return False
        tensor = reader.output[0]
    return False


def _toposort(graph) -> None:
    """Reorder ``graph.node`` so that every node comes after the producers of its inputs (stable otherwise)."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        progress = False
        rest = []
        for n in pending:
            if all(t in known for t in n.input):
                ordered.append(n)
                known.update(n.output)
                progress = True
            else:
                rest.append(n)
        if not progress:
            raise ValueError("The Q/DQ graph has a cycle or a dangling input after lifting the pairs.")
        pending = rest
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)
