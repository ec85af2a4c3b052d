"""The ONNX Runtime engine of the tracking policy (:class:`stark_ros.tracking.policy.Engine`): the two
exported graphs of a model folder, and on a GPU the cutting of the crops the policy planned (the crop
graph, :mod:`stark_ros.runtime.crops`); no decisions: those are the policy's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from stark_ros.core.geometry import crop_batch
from stark_ros.runtime.crops import CropSession
from stark_ros.runtime.session import (
    CPU,
    CROPS_GRAPH,
    CROPS_HOST,
    GPU_PROVIDERS,
    TENSORRT,
    GraphSession,
    ModelLoadError,
    RuntimeOptions,
    provider_list,
    session_options,
)
from stark_ros.tracking import model_metadata as md

# A token of this engine: the template graph's (feat, feat_mask, pos) for one crop, batch 1 each.
Token = tuple[np.ndarray, np.ndarray, np.ndarray]


def resolve_model_dir(model_dir) -> Path:
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: model folder not found (expected {md.TEMPLATE_FILE} and {md.TRACK_FILE})")
    return path


def _same_objects(a, b) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class OrtEngine:
    """``template.onnx`` + ``track.onnx`` of one export. ``info`` is the export's metadata (its
    tracker settings, lost thresholds and score source are the model's own)."""

    def __init__(self, model_dir, options: RuntimeOptions | None = None):
        self.options = options or RuntimeOptions()
        self.model_dir = resolve_model_dir(model_dir)
        self.template = GraphSession(self.model_dir / md.TEMPLATE_FILE, md.GRAPH_TEMPLATE, self.options)
        self.track_graph = GraphSession(self.model_dir / md.TRACK_FILE, md.GRAPH_TRACK, self.options)
        if self.template.info != self.track_graph.info:
            raise ModelLoadError(f"{self.model_dir}: {md.TEMPLATE_FILE} and {md.TRACK_FILE} come from different "
                                 f"exports ({self.template.info.source_sha256[:12]} vs "
                                 f"{self.track_graph.info.source_sha256[:12]})")
        self.info = self.track_graph.info
        self.template.require_inputs([md.IN_IMAGE, md.IN_MASK])
        self._prefixes = md.TEMPLATE_INPUT_PREFIXES[: 1 + self.info.settings.num_dynamic_templates]
        # Every template's features and mask are required; its position encoding only where the
        # model reads it: a correlation-matching model compares template tokens by content alone,
        # and the exporter leaves out graph inputs that nothing reads.
        self.track_graph.require_inputs([n for p in self._prefixes for n in md.token_input_names(p)[:2]]
                                        + [md.IN_SEARCH_IMAGE, md.IN_SEARCH_MASK])
        self._fed = set(self.track_graph.input_names)
        # Per template slot: the tokens last batched and their batch (see track_feeds).
        self._batched: dict[str, tuple] = {}
        # Batched tokens live on the GPU the tracking graph runs on (read there through IO binding).
        self._token_device = "cuda" if any(p in self.providers for p in GPU_PROVIDERS) else None
        self.crop_session = self._crop_session()

    def _crop_session(self) -> CropSession | None:
        """The crop graph where it runs beside the network: on its GPU (CUDA; integer gathers are
        CUDA's, not TensorRT's), or anywhere when asked for."""
        on_gpu = any(p in self.providers for p in GPU_PROVIDERS)
        if self.options.crops == CROPS_HOST or (not on_gpu and self.options.crops != CROPS_GRAPH):
            return None
        if on_gpu:
            return CropSession(provider_list(self.options, exclude=(TENSORRT,)), "cuda", session_options(self.options))
        return CropSession([(CPU, {})], None, session_options(self.options))

    def crop(self, frame: np.ndarray, plans, mean, std):
        """The crops of ``plans`` in one call (see :func:`stark_ros.tracking.policy.network_inputs`)."""
        if self.crop_session is None:
            return crop_batch(frame, plans, mean, std)
        return self.crop_session.run(frame, plans, mean, std)

    @property
    def providers(self) -> tuple[str, ...]:
        return self.track_graph.providers

    def encode_templates(self, images: np.ndarray, masks: np.ndarray) -> list[Token]:
        feat, mask, pos = self.template.run({md.IN_IMAGE: images, md.IN_MASK: masks})
        # Count the outputs, not the inputs: on a GPU the crops are an OrtValue on the device.
        return [(feat[i:i + 1], mask[i:i + 1], pos[i:i + 1]) for i in range(len(feat))]

    def track_feeds(self, templates_by_slot: list[list[Token]], images, masks) -> dict:
        """The tracking graph's inputs: the tokens of each slot batched, the search crops. A slot's
        batch is made once and reused while its tokens stay the same (they change only when a target
        starts, stops or refreshes its template): on a GPU it stays on the device."""
        feeds = {md.IN_SEARCH_IMAGE: images, md.IN_SEARCH_MASK: masks}
        for prefix, tokens in zip(self._prefixes, templates_by_slot, strict=True):
            cached = self._batched.get(prefix)
            if cached is None or not _same_objects(cached[0], tokens):
                cached = (tuple(tokens), self._batch_tokens(prefix, tokens))
                self._batched[prefix] = cached
            feeds.update(cached[1])
        return feeds

    def _batch_tokens(self, prefix: str, tokens: list[Token]) -> dict:
        batch = {}
        for part, name in enumerate(md.token_input_names(prefix)):
            if name in self._fed:
                value = np.concatenate([token[part] for token in tokens])
                batch[name] = (ort.OrtValue.ortvalue_from_numpy(value, self._token_device, 0)
                               if self._token_device else value)
        return batch

    def predict(self, templates_by_slot: list[list[Token]], images: np.ndarray,
                masks: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self.track_graph.run(self.track_feeds(templates_by_slot, images, masks))
        # The graph returns the first query only (boxes (N, 4), logits (N, 1)): that is the policy's
        # query rule, so the query axis has length 1 here.
        boxes = outputs[0][:, None, :]
        logits = outputs[1] if len(outputs) > 1 else None
        return boxes, logits
