"""What an uploaded ONNX graph may not do, checked before onnxruntime sees it.

* **No external data, anywhere.** A tensor whose bytes live in a file named by the
  graph (`external_data`, `data_location = EXTERNAL`) would make onnxruntime read
  that file from the consumer's disk: the signing key, the SQLite store. Every
  tensor a model can hold is looked at: graph initializers and sparse
  initializers, `Constant` (and any other node's) tensor, tensors, sparse tensor
  attributes, the subgraphs of `If`, `Loop` and `Scan` (recursively), model-local
  functions and training graphs. One is enough to refuse the file. (Sessions are
  also created so that onnxruntime can't resolve external data at all:
  `onnx_models.session`.)
* **No work sized by the request.** The ops whose output size or running time is
  set by the *value* of an input (`Loop`'s trip count; the shape of `Expand`,
  `Tile`'s repeats, `ConstantOfShape`, `Range`'s bounds, `OneHot`'s depth) must
  take it from a constant of the graph (an initializer or a `Constant` node), at
  most `max_trips` iterations (nested loops multiply) or `max_elements` elements.
  A `Loop` with no trip count runs until its condition says so: refused. Other ops' outputs are bounded
  by their inputs' sizes; `Reshape` never changes the number of elements.
* **Tree ensembles that end.** `TreeEnsemble*` nodes (ai.onnx.ml): in each tree,
  every branch's children exist and come after it, so a walk down a tree always
  reaches a leaf.

Every refusal is a `GraphRefused` naming the node or tensor and the rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["GraphRefused", "check"]


class GraphRefused(ValueError):
    """The graph breaks one of the rules above; the message names where."""


def check(model: Any, max_trips: int, max_elements: int) -> None:
    """GraphRefused unless `model` (an `onnx.ModelProto`) keeps every rule of this module."""
    found = next(external_data(model), None)
    if found is not None:
        raise GraphRefused(
            f"{found} is stored as external data (a file on the server's disk): ONNX files with external data are "
            "refused; save the model with every tensor inside it (onnx.save_model(..., save_as_external_data=False))"
        )
    for body, where in [(model.graph, "the main graph"), *((f, f"function {f.name!r}") for f in model.functions)]:
        _sizes(body, where, {}, 1, max_trips, max_elements)
    for info in model.training_info:
        for body in (info.initialization, info.algorithm):
            _sizes(body, "a training graph", {}, 1, max_trips, max_elements)
    for body, where in [*graphs(model), *((f, f"function {f.name!r}") for f in model.functions)]:
        _trees(body, where)


# ---- external data ---------------------------------------------------------------------------------


def external_data(model: Any) -> Iterator[str]:
    """Where `model` holds a tensor stored as external data, one description each."""
    for graph, where in graphs(model):
        for tensor in graph.initializer:
            if _external(tensor):
                yield f"initializer {tensor.name!r} of {where}"
        for sparse in graph.sparse_initializer:
            if _external(sparse.values) or _external(sparse.indices):
                yield f"sparse initializer {sparse.values.name!r} of {where}"
        for node in graph.node:
            yield from _node_external(node, where)
    for function in model.functions:
        for node in function.node:
            yield from _node_external(node, f"function {function.name!r}")


def _node_external(node: Any, where: str) -> Iterator[str]:
    for attribute in node.attribute:
        tensors = [attribute.t, *attribute.tensors]
        sparse = [attribute.sparse_tensor, *attribute.sparse_tensors]
        if any(_external(t) for t in tensors) or any(_external(s.values) or _external(s.indices) for s in sparse):
            yield f"attribute {attribute.name!r} of {node.op_type} node {node.name!r} in {where}"


def _external(tensor: Any) -> bool:
    from onnx import TensorProto

    return bool(tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data))


def graphs(model: Any) -> Iterator[tuple[Any, str]]:
    """Every graph of `model` with a description: the main graph, each node's subgraphs (recursively, also inside
    functions) and training graphs. Functions' own nodes are in `model.functions`; their subgraphs are here."""
    roots: list[tuple[Any, str]] = [(model.graph, "the main graph")]
    for info in model.training_info:
        roots += [(info.initialization, "a training graph"), (info.algorithm, "a training graph")]
    stack = list(roots)
    for function in model.functions:
        stack.extend(_subgraphs(function.node, f"function {function.name!r}"))
    while stack:
        graph, where = stack.pop()
        yield graph, where
        stack.extend(_subgraphs(graph.node, where))


def _subgraphs(nodes: Any, where: str) -> Iterator[tuple[Any, str]]:
    for node in nodes:
        for attribute in node.attribute:
            inner = f"the {attribute.name!r} subgraph of {node.op_type} node {node.name!r} in {where}"
            if attribute.HasField("g"):
                yield attribute.g, inner
            for graph in attribute.graphs:
                yield graph, inner


# ---- sizes set by values ---------------------------------------------------------------------------

# op type -> the positions of its inputs whose values size its output (or its iterations, for Loop).
_SIZED_BY = {"Loop": (0,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2), "OneHot": (1,)}


def _constants(graph: Any) -> dict[str, Any]:
    """What a graph (or a function's body) fixes, by name: its initializers and its `Constant` nodes' values
    (protos, turned into arrays by `_value` only when a size needs one)."""
    out: dict[str, Any] = {t.name: t for t in getattr(graph, "initializer", ()) if t.name}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value":
                    out[node.output[0]] = attribute.t
                elif attribute.name in ("value_int", "value_float"):
                    out[node.output[0]] = np.asarray(attribute.i if attribute.name == "value_int" else attribute.f)
                elif attribute.name in ("value_ints", "value_floats"):
                    out[node.output[0]] = np.asarray(list(attribute.ints or attribute.floats))
    return out


def _value(constant: Any) -> np.ndarray:
    from onnx import numpy_helper

    return constant if isinstance(constant, np.ndarray) else np.asarray(numpy_helper.to_array(constant))


def _sizes(graph: Any, where: str, outer: dict[str, Any], trips: int, max_trips: int, max_elements: int) -> None:
    """The rules on sizes, for `graph` and its subgraphs: `outer` the constants of the graphs around it
    (a subgraph sees them), `trips` how many times the loops around it run (nested loops multiply)."""
    constants = {**outer, **_constants(graph)}
    for node in graph.node:
        inner_trips = trips
        positions = _SIZED_BY.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if positions is not None:
            inner_trips = _sized(node, positions, where, constants, trips, max_trips, max_elements)
        for attribute in node.attribute:
            inner = f"the {attribute.name!r} subgraph of {node.op_type} node {node.name!r} in {where}"
            for body in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                _sizes(body, inner, constants, inner_trips, max_trips, max_elements)


def _sized(node: Any, positions: tuple[int, ...], where: str, constants: dict[str, Any], trips: int, max_trips: int, max_elements: int) -> int:
    """GraphRefused unless the inputs at `positions` are constants within the caps; the trips of a Loop's body."""
    label = f"{node.op_type} node {node.name!r} in {where}"
    values = []
    for i in positions:
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            if node.op_type == "Loop":
                raise GraphRefused(f"{label} has no trip count (it runs until its condition stops it): give it a constant one")
            raise GraphRefused(f"{label} lacks input {i}")
        if name not in constants:
            raise GraphRefused(
                f"{label} takes the size of its output from {name!r}, computed at predict time: ONNX imports take "
                "sizes and trip counts from constants of the graph only"
            )
        values.append(_value(constants[name]))
    return _bounded(node.op_type, label, values, trips, max_trips, max_elements)


def _bounded(op: str, label: str, values: list[np.ndarray], trips: int, max_trips: int, max_elements: int) -> int:
    if op == "Loop":
        count = int(values[0].reshape(-1)[0]) if values[0].size else 0
        total = max(count, 0) * trips
        if total > max_trips:
            nested = f" ({count} times each of the {trips} runs of the loops around it)" if trips > 1 else ""
            raise GraphRefused(f"{label} runs {total} times{nested}, more than ML_SERVER_IMPORT_MAX_LOOP_TRIPS={max_trips}")
        return max(total, 1)
    if op == "Range":
        start, limit, delta = (float(v.reshape(-1)[0]) for v in values)
        made = float("inf") if delta == 0 else max(0.0, float(np.ceil((limit - start) / delta)))
    else:
        factors = np.abs(values[0].astype(np.float64).reshape(-1))
        made = float(np.prod(np.maximum(factors, 1.0)))
    if not made <= max_elements:
        raise GraphRefused(f"{label} makes {made:.3g} elements, more than ML_SERVER_IMPORT_MAX_ELEMENTS={max_elements}")
    return trips


# ---- tree ensembles --------------------------------------------------------------------------------


def _trees(graph: Any, where: str) -> None:
    for node in graph.node:
        if not node.op_type.startswith("TreeEnsemble") or node.domain != "ai.onnx.ml":
            continue
        attributes = {a.name: a for a in node.attribute}
        if "nodes_nodeids" not in attributes:
            continue  # the tensor-attribute form (TreeEnsemble, opset 5) is checked by onnxruntime
        label = f"{node.op_type} node {node.name!r} in {where}"
        trees = list(attributes["nodes_treeids"].ints)
        ids = list(attributes["nodes_nodeids"].ints)
        modes = [m.decode() for m in attributes["nodes_modes"].strings] if "nodes_modes" in attributes else []
        true = list(attributes["nodes_truenodeids"].ints) if "nodes_truenodeids" in attributes else []
        false = list(attributes["nodes_falsenodeids"].ints) if "nodes_falsenodeids" in attributes else []
        if not (len(trees) == len(ids) == len(modes) == len(true) == len(false)):
            raise GraphRefused(f"{label}: its nodes_* attributes differ in length")
        known = set(zip(trees, ids))
        for tree, nid, mode, yes, no in zip(trees, ids, modes, true, false):
            if mode == "LEAF":
                continue
            for child in (yes, no):
                if child <= nid or (tree, child) not in known:
                    raise GraphRefused(
                        f"{label}: node {nid} of tree {tree} branches to node {child}, which is not a later node of its tree "
                        "(a tree whose walk may never end)"
                    )
