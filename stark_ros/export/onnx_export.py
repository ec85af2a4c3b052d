"""Export a STARK checkpoint to the two ONNX graphs the runtime runs.

* ``template.onnx``: normalised crop (B, 3, 128, 128) + float pad mask (B, 128, 128) -> the crop's
  tokens ``feat`` (B, L, C), ``feat_mask`` (B, L), ``pos`` (B, L, C). Used for the initial and the
  dynamic templates.
* ``track.onnx``: tokens of the initial template (and of the dynamic template for STARK-ST) +
  the search crop -> ``boxes`` (B, 4) and ``score_logit`` (B, 1). Batch axis dynamic: N targets
  run in one call.

No boolean tensors anywhere (masks are float), opset >= 17, metadata from
:mod:`stark_ros.tracking.model_metadata`.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path

import onnx
import torch
from torch import nn

import stark_ros
from stark_ros.core.locate import file_sha256
from stark_ros.export.metadata import replace_metadata
from stark_ros.model import StarkModel, load_checkpoint
from stark_ros.tracking import model_metadata as md

OPSET = 17
LOG = logging.getLogger(__name__)


class TemplateGraph(nn.Module):
    def __init__(self, model: StarkModel):
        super().__init__()
        self.model = model

    def forward(self, image, mask):
        tokens = self.model.forward_backbone(image, mask)
        return tokens["feat"].transpose(0, 1), tokens["mask"], tokens["pos"].transpose(0, 1)


class TrackGraph(nn.Module):
    def __init__(self, model: StarkModel):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        *template_inputs, search_image, search_mask = inputs
        templates = [{"feat": template_inputs[i].transpose(0, 1), "mask": template_inputs[i + 1],
                      "pos": template_inputs[i + 2].transpose(0, 1)}
                     for i in range(0, len(template_inputs), 3)]
        search = self.model.forward_backbone(search_image, search_mask)
        out = self.model.forward_head(templates, search)
        boxes = out["pred_boxes"][:, 0]
        if out["pred_logits"] is None:
            return boxes
        return boxes, out["pred_logits"][:, 0]


def _example_tokens(model: StarkModel, batch: int):
    s = model.config.tracker
    image = torch.randn(batch, 3, s.template_size, s.template_size)
    mask = torch.zeros(batch, s.template_size, s.template_size)
    with torch.no_grad():
        return TemplateGraph(model)(image, mask)


def _attach_metadata(path: Path, graph: str, model: StarkModel, source_sha256: str) -> None:
    proto = onnx.load(str(path))
    meta = {
        md.KEY_FORMAT: md.FORMAT_VERSION,
        md.KEY_GRAPH: graph,
        md.KEY_VARIANT: model.config.variant,
        md.KEY_SETTINGS: json.dumps(model.config.tracker.to_dict()),
        md.KEY_MODEL_CONFIG: json.dumps(model.config.to_dict()),
        md.KEY_EXPORTER_VERSION: stark_ros.__version__,
        md.KEY_SOURCE_SHA256: source_sha256,
    }
    replace_metadata(proto, meta)
    proto.doc_string = f"STARK-{model.config.variant} {graph} graph, exported by stark_ros {stark_ros.__version__}"
    onnx.checker.check_model(proto, full_check=True)
    _assert_no_bool_tensors(proto, path)
    onnx.save(proto, str(path))


def _assert_no_bool_tensors(proto: onnx.ModelProto, path: Path) -> None:
    inferred = onnx.shape_inference.infer_shapes(proto)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    bools = [v.name for v in values if v.type.tensor_type.elem_type == onnx.TensorProto.BOOL]
    if bools:
        raise RuntimeError(f"{path}: boolean tensors in the graph (TensorRT rejects them): {bools[:10]}")


def export_model(model: StarkModel, out_dir, source_sha256: str = "",
                 score_source: str | None = None) -> tuple[Path, Path]:
    """Write ``template.onnx`` and ``track.onnx`` for ``model`` into ``out_dir``. ``score_source``
    (``score_head`` or ``appearance``, see TrackerSettings) is recorded in the metadata."""
    # torch.onnx.export restores each wrapper graph's own training flag afterwards, recursively; the
    # wrappers are in eval mode, and the caller's model gets its own mode (and config) back here.
    was_training, config = model.training, model.config
    if score_source is not None:
        model.config = replace(config, tracker=replace(config.tracker, score_source=score_source))
    try:
        return _export_quietly(model, out_dir, source_sha256)
    finally:
        model.train(was_training)
        model.config = config


def _export_quietly(model: StarkModel, out_dir, source_sha256: str) -> tuple[Path, Path]:
    with warnings.catch_warnings():
        # The TorchScript exporter (chosen for its plain, TensorRT-friendly graphs) announces its
        # deprecation on every call; that is noise for users of this function.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return _export(model, out_dir, source_sha256)


def _export(model: StarkModel, out_dir, source_sha256: str) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    s = model.config.tracker
    batch = 2  # an example batch > 1 so no size-1 axis gets baked in as a constant

    template_path = out_dir / md.TEMPLATE_FILE
    t_img = torch.randn(batch, 3, s.template_size, s.template_size)
    t_mask = torch.zeros(batch, s.template_size, s.template_size)
    token_axes = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            TemplateGraph(model).eval(), (t_img, t_mask), str(template_path), opset_version=OPSET, dynamo=False,
            input_names=[md.IN_IMAGE, md.IN_MASK], output_names=[md.OUT_FEAT, md.OUT_FEAT_MASK, md.OUT_POS],
            dynamic_axes={md.IN_IMAGE: token_axes, md.IN_MASK: token_axes, md.OUT_FEAT: token_axes,
                          md.OUT_FEAT_MASK: token_axes, md.OUT_POS: token_axes},
            do_constant_folding=True)
    _attach_metadata(template_path, md.GRAPH_TEMPLATE, model, source_sha256)

    track_path = out_dir / md.TRACK_FILE
    tokens = _example_tokens(model, batch)
    prefixes = md.TEMPLATE_INPUT_PREFIXES[: model.config.num_templates]
    token_inputs = []
    input_names = []
    for prefix in prefixes:
        token_inputs.extend(tokens)
        input_names.extend(md.token_input_names(prefix))
    search = (torch.randn(batch, 3, s.search_size, s.search_size), torch.zeros(batch, s.search_size, s.search_size))
    input_names += [md.IN_SEARCH_IMAGE, md.IN_SEARCH_MASK]
    output_names = [md.OUT_BOXES] + ([md.OUT_SCORE_LOGIT] if model.config.score_head else [])
    with torch.no_grad():
        torch.onnx.export(
            TrackGraph(model).eval(), (*token_inputs, *search), str(track_path), opset_version=OPSET, dynamo=False,
            input_names=input_names, output_names=output_names,
            dynamic_axes={name: {0: "batch"} for name in input_names + output_names},
            do_constant_folding=True)
    _attach_metadata(track_path, md.GRAPH_TRACK, model, source_sha256)
    LOG.info("exported STARK-%s to %s", model.config.variant, out_dir)
    return template_path, track_path


def export_checkpoint(checkpoint, out_dir, variant: str | None = None,
                      score_source: str | None = None) -> tuple[Path, Path]:
    """Any checkpoint the model loader accepts -> the two graphs (metadata names its sha256)."""
    model, _ = load_checkpoint(checkpoint, variant=variant)
    return export_model(model, out_dir, source_sha256=file_sha256(checkpoint), score_source=score_source)
