"""torch -> ONNX export of STARK models (two graphs + metadata the runtime reads).

The exporter needs torch; ``stark_ros.export.metadata`` (rewriting a model's metadata, used by the
score study) needs only onnx, so the exporter is imported on first use, not with the package.
"""

__all__ = ["OPSET", "export_checkpoint", "export_model"]


def __getattr__(name):
    if name in __all__:
        from stark_ros.export import onnx_export

        return getattr(onnx_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
