"""The names an uploaded skops file may ask for, matched exactly, read from its `schema.json` before skops runs.

A skops file is a tree of nodes; each names a loader (`__loader__`) and a type
(`__module__`.`__class__`) that the loader looks up and, for most loaders,
calls. skops' own audit trusts by default every scikit-learn class and many
numpy functions, and has been bypassed before; so an import holds every node to
a list of its own, loader by loader, with no prefixes and no "any class of this
package":

* containers and scalars (`DictNode`, `ListNode`, `TupleNode`, `JsonNode`, …)
  may name only their own builtin type (a `TupleNode` naming a namedtuple class
  would call it);
* `NdArrayNode` only `numpy.ndarray` or a numpy scalar type, `DTypeNode`
  `numpy.dtype`, `RandomStateNode` numpy's `RandomState`, `RandomGeneratorNode`
  numpy's `Generator` with one of numpy's bit generators (whose name hides in
  the node's content, and is called);
* `TypeNode` only builtin and numpy scalar types;
* `ObjectNode`, `TreeNode`, `LossNode` (classes built from their state) only
  the family's allowlist (`Family.trusted()`), `IMPORT_TRUSTED` and the exact
  loss and link classes below;
* `CachedNode` refers to a node seen earlier and names nothing;
* every other loader (functions, methods, partials, operators, reduce
  constructors, sparse matrices, …) is refused.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

__all__ = ["LOSSES", "refused_names"]

# The loss and link objects that the fitted estimators of the built-in families hold, by exact name:
# HistGradientBoostingClassifier (gbm) and SGDClassifier (sgd, every `loss` it takes).
LOSSES = frozenset(
    {
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss._loss.CyHuberLoss",
        "sklearn.linear_model._sgd_fast.Hinge",
        "sklearn.linear_model._sgd_fast.ModifiedHuber",
        "sklearn.linear_model._sgd_fast.SquaredHinge",
        "sklearn.linear_model._sgd_fast.EpsilonInsensitive",
        "sklearn.linear_model._sgd_fast.SquaredEpsilonInsensitive",
    }
)

_BUILTIN_SCALARS = frozenset({"builtins.str", "builtins.int", "builtins.float", "builtins.bool"})
# numpy's scalar types by the name skops writes (`numpy.float64`), each checked to be that type.
_NUMPY_SCALARS = frozenset(
    f"numpy.{t.__name__}" for t in set(np.sctypeDict.values()) if getattr(np, t.__name__, None) is t
)
_BIT_GENERATORS = frozenset({"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"})

# loader -> the exact names it may ask for; None: the class allowlist given to `refused_names`.
_LOADERS: dict[str, frozenset[str] | None] = {
    "DictNode": frozenset({"builtins.dict"}),
    "ListNode": frozenset({"builtins.list"}),
    "SetNode": frozenset({"builtins.set"}),
    "TupleNode": frozenset({"builtins.tuple"}),
    "SliceNode": frozenset({"builtins.slice"}),
    "BytesNode": frozenset({"builtins.bytes"}),
    "BytearrayNode": frozenset({"builtins.bytearray"}),
    "JsonNode": _BUILTIN_SCALARS,
    "NdArrayNode": frozenset({"numpy.ndarray"}) | _NUMPY_SCALARS,
    "DTypeNode": frozenset({"numpy.dtype"}),
    "RandomStateNode": frozenset({"numpy.random.mtrand.RandomState"}),
    "RandomGeneratorNode": frozenset({"numpy.random._generator.Generator"}),
    "TypeNode": _BUILTIN_SCALARS | _NUMPY_SCALARS,
    "ObjectNode": None,
    "TreeNode": None,
    "LossNode": None,
}


def refused_names(schema: Any, allowed: frozenset[str]) -> list[str]:
    """What the nodes of a skops `schema` (its parsed `schema.json`) ask for beyond the exact lists above, as
    `name (Loader)`; `allowed`: the classes `ObjectNode`, `TreeNode` and `LossNode` may build."""
    refused: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        loader = node.get("__loader__")
        if loader is None or loader == "CachedNode":
            continue
        name = f"{node.get('__module__')}.{node.get('__class__')}"
        names = _LOADERS.get(str(loader), frozenset())
        if name not in (allowed | LOSSES if names is None else names):
            refused.add(f"{name} ({loader})")
        if loader == "RandomGeneratorNode":
            bits = _bit_generator(node)
            if bits not in _BIT_GENERATORS:
                refused.add(f"numpy.random.{bits} (the bit generator of a RandomGeneratorNode)")
    return sorted(refused)


def _bit_generator(node: dict[str, Any]) -> str:
    """The bit generator a `RandomGeneratorNode` names inside its content (skops calls it by that name)."""
    try:
        name = json.loads(node["content"]["bit_generator"]["content"]["bit_generator"]["content"])
    except (KeyError, TypeError, ValueError):
        return "<missing>"
    return name if isinstance(name, str) else "<not a name>"
