"""Targets on one scale, for regressors that learn by gradient descent (`nnreg`).

An MLP regressor starts with small weights and a few hundred steps: asked for body masses in the
thousands, it stops far short of them (R² below 0 on the penguins). Standardizing the target (and
turning predictions back) is what a careful person does, with scikit-learn's own
`TransformedTargetRegressor(regressor, transformer=StandardScaler())` as the model's last step.

skl2onnx has no converter for it: `register_onnx` adds one for exactly this form (a standard
scaler as the transformer): the regressor's own graph, then `* scale + mean`.
"""

from __future__ import annotations

from typing import Any

_registered = False


def scaled(regressor: Any) -> Any:
    """The regressor learning a standardized target, answering in the target's own units."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    return TransformedTargetRegressor(regressor=regressor, transformer=StandardScaler())


def register_onnx() -> None:
    """Teach skl2onnx `TransformedTargetRegressor` with a `StandardScaler` transformer (once per process)."""
    global _registered
    if _registered:
        return
    import numpy as np
    from sklearn.compose import TransformedTargetRegressor
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
    from skl2onnx.algebra.onnx_ops import OnnxAdd, OnnxMul
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes

    def convert(scope: Any, operator: Any, container: Any) -> None:
        model = operator.raw_operator
        transformer = model.transformer_
        if type(transformer).__name__ != "StandardScaler" or model.func is not None:
            raise NotImplementedError("only a TransformedTargetRegressor with a StandardScaler transformer converts")
        opv = container.target_opset
        dtype = np.float32
        scale = np.asarray(transformer.scale_ if transformer.scale_ is not None else [1.0], dtype=dtype)
        mean = np.asarray(transformer.mean_ if transformer.mean_ is not None else [0.0], dtype=dtype)
        raw = OnnxSubEstimator(model.regressor_, operator.inputs[0], op_version=opv)
        out = OnnxAdd(OnnxMul(raw, scale, op_version=opv), mean, op_version=opv, output_names=operator.outputs[:1])
        out.add_to(scope, container)

    update_registered_converter(
        TransformedTargetRegressor, "MlServerScaledTargetRegressor", calculate_linear_regressor_output_shapes, convert
    )
    _registered = True
