"""Float16 twins of exported graphs, for GPUs (ONNX Runtime's CUDA provider computes in the precision
of the graph; TensorRT converts by itself and needs none).

The twin takes and returns float32 tensors, as the float32 graph does (a Cast at each border), so the
runtime feeds both alike. Inside, float tensors and weights are float16, except for the few nodes
kept in float32 between Casts: the position encoding (CumSum, Sin, Cos: running sums and phases
that float16 would round coarsely), L2 norms (sums of squares overflow float16), and the scales of
Resize, which the operator requires in float32.

Needs only ``onnx`` (no torch): ``python -m stark_ros.export.float16 MODEL_DIR`` writes
``template.fp16.onnx`` and ``track.fp16.onnx`` beside the float32 graphs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stark_ros.tracking import model_metadata as md

FLOAT32_OPS = frozenset({"CumSum", "Sin", "Cos", "ReduceL2"})
# Inputs (by position) that an operator requires in float32 whatever its data type.
FLOAT32_INPUTS = {"Resize": (1, 2)}
FP16_MAX = float(np.finfo(np.float16).max)
FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16


def _fp16_tensor(tensor: TensorProto) -> TensorProto:
    # Magnitudes beyond float16 (e.g. -1e9 attention masks) become its largest finite value, not inf.
    values = np.clip(numpy_helper.to_array(tensor), -FP16_MAX, FP16_MAX).astype(np.float16)
    return numpy_helper.from_array(values, tensor.name)


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the float32 tensors of the graph (inputs, weights, node outputs), from shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    typed = list(g.input) + list(g.output) + list(g.value_info)
    names = {v.name for v in typed if v.type.tensor_type.elem_type == FLOAT}
    names |= {t.name for t in g.initializer if t.data_type == FLOAT}
    for node in g.node:
        if node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            scalar = any(a.name == "value_float" for a in node.attribute)
            if scalar or (value is not None and value.t.data_type == FLOAT):
                names.add(node.output[0])
    return names


def float16_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float16 twin of ``model`` (float32 inputs and outputs; see the module docstring)."""
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in model.graph.node
           for a in n.attribute):
        raise ValueError("graphs with subgraphs (If/Loop/Scan) are not converted")
    floats = _float_tensors(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    nodes: list[onnx.NodeProto] = []
    counter = iter(range(1 << 30))

    def cast(name: str, to: int) -> str:
        target = f"{name}__as_{'fp16' if to == FLOAT16 else 'fp32'}_{next(counter)}"
        nodes.append(helper.make_node("Cast", [name], [target], to=to, name=f"{target}_cast"))
        return target

    # Graph inputs: float32 outside, float16 inside.
    renamed = {}
    for inp in g.input:
        if inp.name in floats:
            renamed[inp.name] = cast(inp.name, FLOAT16)
    for tensor in g.initializer:
        if tensor.data_type == FLOAT:
            tensor.CopyFrom(_fp16_tensor(tensor))
    for node in model.graph.node:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for i, name in enumerate(new.input):
            new.input[i] = renamed.get(name, name)
        keep32 = node.op_type in FLOAT32_OPS
        for i, name in enumerate(new.input):
            if name in floats or name in renamed.values():
                if keep32 or i in FLOAT32_INPUTS.get(node.op_type, ()):
                    new.input[i] = cast(new.input[i], FLOAT)
        if node.op_type == "Constant":
            for attr in new.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    attr.t.CopyFrom(_fp16_tensor(attr.t))
                elif attr.name == "value_float":
                    value = np.float16(np.clip(attr.f, -FP16_MAX, FP16_MAX))
                    new.ClearField("attribute")
                    new.attribute.append(helper.make_attribute("value", numpy_helper.from_array(np.array(value))))
                    break
        elif node.op_type == "Cast":
            for attr in new.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = FLOAT16
        elif node.op_type == "ConstantOfShape":
            for attr in new.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    attr.t.CopyFrom(_fp16_tensor(attr.t))
        if keep32:
            outputs = list(new.output)
            for i, name in enumerate(outputs):
                if name in floats:
                    new.output[i] = f"{name}__fp32"
            nodes.append(new)
            for i, name in enumerate(outputs):
                if name in floats:
                    nodes.append(helper.make_node("Cast", [new.output[i]], [name], to=FLOAT16,
                                                  name=f"{name}__fp32_cast"))
            continue
        nodes.append(new)
    # Graph outputs: float16 inside, float32 outside.
    for output in g.output:
        if output.name in floats:
            inner = f"{output.name}__fp16"
            for node in nodes:
                for i, name in enumerate(node.output):
                    if name == output.name:
                        node.output[i] = inner
                for i, name in enumerate(node.input):
                    if name == output.name:
                        node.input[i] = inner
            nodes.append(helper.make_node("Cast", [inner], [output.name], to=FLOAT, name=f"{output.name}__cast"))
    del g.node[:]
    g.node.extend(nodes)
    # Intermediate types are inferred again by ONNX Runtime.
    del g.value_info[:]
    return out


def write_float16_twins(model_dir) -> list[Path]:
    """Write the float16 twin of each graph of ``model_dir``; returns the files written."""
    folder = Path(model_dir)
    written = []
    for name in (md.TEMPLATE_FILE, md.TRACK_FILE):
        target = folder / md.fp16_file(name)
        onnx.save(float16_model(onnx.load(str(folder / name))), str(target))
        written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.export.float16",
                                     description="Write the float16 twins of a model folder's graphs "
                                                 "(for precision fp16 on CUDA).")
    parser.add_argument("model_dir", help="folder with template.onnx and track.onnx")
    args = parser.parse_args(argv)
    for path in write_float16_twins(args.model_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
