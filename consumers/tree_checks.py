"""The trees inside an imported scikit-learn model, checked before it predicts once.

scikit-learn walks a tree by following child indices until it reaches a leaf,
in compiled code that trusts the arrays: a child pointing back at an ancestor
loops forever, one past the node count reads outside the array, and a feature
index past the row's width reads another row's memory. A file can hold any
arrays, so every tree is checked where it is found, whatever holds it (a
forest's or extra-trees' `estimators_`, gradient boosting's array of trees, a
decision tree in a pipeline or a column transformer):

* `sklearn.tree._tree.Tree`: each node is a leaf (both children -1) or has
  both children after it and below `node_count`, and a feature below the
  tree's `n_features`, which is the `n_features_in_` of the estimator that
  holds the tree;
* `HistGradientBoosting*` predictors: each non-leaf node's `left` and `right`
  after it and inside the node array, its `feature_idx` below the model's
  `n_features_in_`, and a categorical node's bitset inside the bitset arrays.

Children after their parent is how scikit-learn numbers nodes (a node is
added before its children), so a walk down any checked tree ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TreeRefused", "check"]

# How deep `check` follows attributes and containers looking for trees: a forest in a pipeline is 8
# levels down. A model nested deeper is refused rather than left partly unchecked.
MAX_DEPTH = 64


class TreeRefused(ValueError):
    """A tree whose walk may not end or reads outside its arrays; the message says which and where."""


def check(model: Any) -> int:
    """TreeRefused for the first broken tree in `model`; the number of trees checked otherwise."""
    from sklearn.tree._tree import Tree

    try:
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    except ImportError:  # pragma: no cover - a scikit-learn without it has no such trees to check
        TreePredictor = None

    checked = 0
    seen: set[int] = set()
    stack: list[tuple[Any, str, int | None, int]] = [(model, type(model).__name__, None, 0)]
    while stack:
        obj, where, width, depth = stack.pop()
        if id(obj) in seen:
            continue
        if depth > MAX_DEPTH:
            raise TreeRefused(f"{where[:200]} is nested more than {MAX_DEPTH} levels deep: too deep to check")
        seen.add(id(obj))
        if isinstance(obj, Tree):
            _tree(obj, where, width)
            checked += 1
            continue
        if TreePredictor is not None and isinstance(obj, TreePredictor):
            _predictor(obj, where, width)
            checked += 1
            continue
        if isinstance(obj, (str, bytes, int, float, bool, type(None), np.generic)):
            continue
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend((item, f"{where}[{i}]", width, depth + 1) for i, item in enumerate(obj.ravel()))
            continue
        if isinstance(obj, (list, tuple)):
            stack.extend((item, f"{where}[{i}]", width, depth + 1) for i, item in enumerate(obj))
            continue
        if isinstance(obj, dict):
            stack.extend((item, f"{where}[{key!r}]", width, depth + 1) for key, item in obj.items())
            continue
        attributes = getattr(obj, "__dict__", None)
        if not isinstance(attributes, dict):
            continue
        own = attributes.get("n_features_in_")
        inner = int(own) if isinstance(own, (int, np.integer)) else width
        stack.extend((item, f"{where}.{name}", inner, depth + 1) for name, item in attributes.items())
    return checked


def _tree(tree: Any, where: str, width: int | None) -> None:
    count = int(tree.node_count)
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    feature = np.asarray(tree.feature, dtype=np.int64)
    n_features = int(tree.n_features)
    if width is not None and n_features != width:
        raise TreeRefused(f"{where} is a tree over {n_features} features inside an estimator of {width}")
    if not (len(left) == len(right) == len(feature) == count):
        raise TreeRefused(f"{where} has arrays of {len(left)}, {len(right)} and {len(feature)} nodes for node_count={count}")
    _nodes(where, left, right, leaf=(left == -1) & (right == -1), count=count)
    inner = left != -1
    bad = np.flatnonzero(inner & ((feature < 0) | (feature >= n_features)))
    if bad.size:
        i = int(bad[0])
        raise TreeRefused(f"{where}: node {i} splits on feature {int(feature[i])}, outside the model's {n_features} features")


def _predictor(predictor: Any, where: str, width: int | None) -> None:
    nodes = predictor.nodes
    count = len(nodes)
    left = np.asarray(nodes["left"], dtype=np.int64)
    right = np.asarray(nodes["right"], dtype=np.int64)
    leaf = np.asarray(nodes["is_leaf"]).astype(bool)
    _nodes(where, np.where(leaf, -1, left), np.where(leaf, -1, right), leaf=leaf, count=count)
    feature = np.asarray(nodes["feature_idx"], dtype=np.int64)
    if width is None:
        raise TreeRefused(f"{where} is a gradient boosting tree outside a model that says its number of features")
    bad = np.flatnonzero(~leaf & ((feature < 0) | (feature >= width)))
    if bad.size:
        i = int(bad[0])
        raise TreeRefused(f"{where}: node {i} splits on feature {int(feature[i])}, outside the model's {width} features")
    categorical = ~leaf & np.asarray(nodes["is_categorical"]).astype(bool)
    if categorical.any():
        bitsets = min(len(predictor.raw_left_cat_bitsets), len(predictor.binned_left_cat_bitsets))
        index = np.asarray(nodes["bitset_idx"], dtype=np.int64)[categorical]
        if ((index < 0) | (index >= bitsets)).any():
            raise TreeRefused(f"{where}: a categorical split points outside its {bitsets} category sets")


def _nodes(where: str, left: np.ndarray, right: np.ndarray, *, leaf: np.ndarray, count: int) -> None:
    """Every node a leaf (both children -1) or with both children after it and below `count`."""
    index = np.arange(count)
    half = (left == -1) != (right == -1)
    if half.any():
        i = int(np.flatnonzero(half)[0])
        raise TreeRefused(f"{where}: node {i} has one child (left {int(left[i])}, right {int(right[i])})")
    inner = ~leaf
    for side, children in (("left", left), ("right", right)):
        bad = np.flatnonzero(inner & ((children <= index) | (children >= count)))
        if bad.size:
            i = int(bad[0])
            what = "an earlier node (a cycle)" if children[i] <= i else f"past the last node ({count - 1})"
            raise TreeRefused(f"{where}: node {i}'s {side} child is node {int(children[i])}, {what}")
