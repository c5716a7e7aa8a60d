"""Hostile model files, made by the tests: ONNX graphs with external data or sizes set by the request,
scikit-learn trees with cycles or children out of range, zip bombs, skops files asking for names beyond
the allowlist."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from typing import Any

import numpy as np
import onnx
import skops.io
from onnx import TensorProto, helper, numpy_helper

# A file next to the processes' working directory (the repository root): what a graph would read.
TARGET = "pyproject.toml"
OPSET = [helper.make_opsetid("", 17)]


def _external(name: str, location: str = TARGET) -> TensorProto:
    """A float tensor of one element whose 4 bytes live in `location`."""
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[1], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _model(nodes: list[Any], initializers: list[TensorProto] | None = None, functions: list[Any] | None = None, **graph: Any) -> bytes:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])
    out = helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])
    g = helper.make_graph(nodes, "hostile", [x], [out], initializer=initializers or [], **graph)
    opsets = OPSET + ([helper.make_opsetid("local", 1)] if functions else [])
    return helper.make_model(g, opset_imports=opsets, functions=functions or []).SerializeToString()


def onnx_external(where: str) -> bytes:
    """`variable = X + w`, where `w` is external data held in the graph `where`: an initializer, a sparse
    initializer, a Constant node, the branch of an If, the body of a Loop, or a model-local function."""
    add = helper.make_node("Add", ["X", "w"], ["variable"])
    if where == "initializer":
        return _model([add], [_external("w")])
    if where == "sparse":
        values = _external("w_values")
        indices = numpy_helper.from_array(np.array([0], dtype=np.int64), "w_indices")
        sparse = helper.make_sparse_tensor(values, indices, [1])
        return _model([add], sparse_initializer=[sparse])
    constant = helper.make_node("Constant", [], ["w"], value=_external("value"))
    if where == "constant":
        return _model([constant, add])
    if where == "if":
        branch_out = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])
        then = helper.make_graph([constant], "then", [], [branch_out])
        other = helper.make_graph([helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(np.ones(1, np.float32)))], "else", [], [branch_out])
        cond = numpy_helper.from_array(np.array(True), "cond")
        return _model([helper.make_node("If", ["cond"], ["w"], then_branch=then, else_branch=other), add], [cond])
    if where == "loop":
        body = helper.make_graph(
            [helper.make_node("Identity", ["cond_in"], ["cond_out"]), constant, helper.make_node("Add", ["acc_in", "w"], ["acc_out"])],
            "body",
            [
                helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1]),
            ],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1])],
        )
        init = [numpy_helper.from_array(np.array(1, np.int64), "trips"), numpy_helper.from_array(np.array(True), "cond"),
                numpy_helper.from_array(np.zeros(1, np.float32), "zero")]
        return _model([helper.make_node("Loop", ["trips", "cond", "zero"], ["w"], body=body), add], init)
    if where == "function":
        function = helper.make_function("local", "AddSecret", ["x"], ["y"], [constant, helper.make_node("Add", ["x", "w"], ["y"])], OPSET)
        return _model([helper.make_node("AddSecret", ["X"], ["variable"], domain="local")], functions=[function])
    raise ValueError(where)


def onnx_loop(trips: int | None) -> bytes:
    """`variable = X + (1 added trips times)`, the trip count a constant (`trips`) or, for None, read from X."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1])],
    )
    init = [numpy_helper.from_array(np.array(True), "cond"), numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
            numpy_helper.from_array(np.ones(1, np.float32), "one")]
    nodes = []
    if trips is None:  # the trip count is the first value of the request, cast to an integer
        nodes += [helper.make_node("ReduceMax", ["X"], ["top"], keepdims=0), helper.make_node("Cast", ["top"], ["trips"], to=TensorProto.INT64)]
    else:
        init.append(numpy_helper.from_array(np.array(trips, np.int64), "trips"))
    nodes += [helper.make_node("Loop", ["trips", "cond", "zero"], ["w"], body=body), helper.make_node("Add", ["X", "w"], ["variable"])]
    return _model(nodes, init)


def broken_tree(model: Any, how: str) -> Any:
    """`model` (fitted; a forest, a decision tree or a pipeline ending in one) with its first tree broken:
    `cycle` (a node's left child is the root), `out-of-range` (a child past the node count), `feature`
    (a split on a feature the model does not have). The arrays are views into the tree: edited in place."""
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    tree = (final.estimators_[0] if hasattr(final, "estimators_") else final).tree_
    inner = np.flatnonzero(tree.children_left != -1)
    node = int(inner[-1])  # the last split: deep in the tree, off the path most rows take
    if how == "cycle":
        tree.children_left[node] = 0
    elif how == "out-of-range":
        tree.children_right[node] = tree.node_count + 1000
    elif how == "feature":
        tree.feature[node] = tree.n_features + 7
    else:
        raise ValueError(how)
    return model


def rewrite_skops(blob: bytes, edit: Any) -> bytes:
    """The skops file `blob` with `edit(schema)` applied to its schema.json (edited in place)."""
    with zipfile.ZipFile(io.BytesIO(blob)) as source:
        members = {name: source.read(name) for name in source.namelist()}
    schema = json.loads(members["schema.json"])
    edit(schema)
    members["schema.json"] = json.dumps(schema).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name, data in members.items():
            target.writestr(name, data)
    return out.getvalue()


def nodes(schema: Any, loader: str) -> list[dict[str, Any]]:
    """The nodes of a skops schema with `loader`, depth first."""
    found, stack = [], [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node.get("__loader__") == loader:
                found.append(node)
            stack.extend(node.values())
    return found


def zip_bomb(inflated: int, declared: int | None = None, member: str = "schema.json") -> bytes:
    """A zip archive of one member of `inflated` spaces (a multiple of 1 MiB), deflated to about 1/1000 of
    that in milliseconds; its headers declare `declared` bytes (default: the truth). The CRC is not the
    member's: a reader that inflates it all finds out only at the end."""
    chunk = b" " * (1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)  # the same bytes for every further MiB
    data = first + again * (inflated // len(chunk) - 1) + deflate.flush()
    size = inflated if declared is None else declared
    name = member.encode()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, len(data), size, len(name), 0) + name
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, 0, len(data), size, len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    return local + data + central + end


def dumps(model: Any) -> bytes:
    return bytes(skops.io.dumps(model))


def check_model(blob: bytes) -> None:
    """The graph is otherwise a valid ONNX model (what `onnx.checker` says, external data aside)."""
    onnx.checker.check_model(onnx.load_model_from_string(blob))


def onnx_nested_loops(outer: int, inner: int) -> bytes:
    """`variable = X + outer * inner`: a Loop of `outer` trips whose body runs a Loop of `inner` trips."""

    def body(nodes: list[Any], p: str) -> Any:  # `p`: the prefix of its names (a graph's names are unique)
        return helper.make_graph(
            [helper.make_node("Identity", [f"{p}cond_in"], [f"{p}cond_out"]), *nodes],
            f"{p}body",
            [
                helper.make_tensor_value_info(f"{p}i", TensorProto.INT64, []),
                helper.make_tensor_value_info(f"{p}cond_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info(f"{p}acc_in", TensorProto.FLOAT, [1]),
            ],
            [helper.make_tensor_value_info(f"{p}cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info(f"{p}acc_out", TensorProto.FLOAT, [1])],
        )

    innermost = body([helper.make_node("Add", ["in_acc_in", "one"], ["in_acc_out"])], "in_")
    middle = body([helper.make_node("Loop", ["inner_trips", "cond", "out_acc_in"], ["out_acc_out"], body=innermost)], "out_")
    init = [numpy_helper.from_array(np.array(True), "cond"), numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
            numpy_helper.from_array(np.ones(1, np.float32), "one"), numpy_helper.from_array(np.array(outer, np.int64), "outer_trips"),
            numpy_helper.from_array(np.array(inner, np.int64), "inner_trips")]
    nodes = [helper.make_node("Loop", ["outer_trips", "cond", "zero"], ["w"], body=middle), helper.make_node("Add", ["X", "w"], ["variable"])]
    return _model(nodes, init)


def onnx_expand(shape: list[int] | None) -> bytes:
    """`variable = ReduceMax(Expand(X, shape))`: the shape a constant, or (None) taken from the request's
    values (`X` cast to integers)."""
    nodes, init = [], []
    if shape is None:
        nodes += [helper.make_node("Cast", ["X"], ["as_int"], to=TensorProto.INT64), helper.make_node("Reshape", ["as_int", "flat"], ["shape"])]
        init.append(numpy_helper.from_array(np.array([-1], np.int64), "flat"))
    else:
        init.append(numpy_helper.from_array(np.array(shape, np.int64), "shape"))
    nodes += [helper.make_node("Expand", ["X", "shape"], ["big"]), helper.make_node("ReduceMax", ["big", "axes"], ["variable"], keepdims=1)]
    init.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
    g = helper.make_graph(nodes, "expand", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
                          [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])], initializer=init)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def onnx_tree_cycle(graph: bytes) -> bytes:
    """A tree ensemble graph (skl2onnx's) whose first branch's true child is the tree's root."""
    model = onnx.load_model_from_string(graph)
    for node in model.graph.node:
        if node.op_type.startswith("TreeEnsemble"):
            attributes = {a.name: a for a in node.attribute}
            modes = [m.decode() for m in attributes["nodes_modes"].strings]
            attributes["nodes_truenodeids"].ints[modes.index("BRANCH_LEQ") if "BRANCH_LEQ" in modes else 0] = 0
            return model.SerializeToString()
    raise ValueError("no tree ensemble in the graph")
