"""torch -> ONNX export of STARK models (two graphs + metadata the runtime reads)."""

from stark_ros.export.onnx_export import OPSET, export_checkpoint, export_model

__all__ = ["OPSET", "export_checkpoint", "export_model"]
