"""The torch-free multi-target STARK tracker on ONNX Runtime.

All targets' search crops go through the tracking graph in one batched call per frame. Crops,
mapping and clipping are :mod:`stark_ros.core.geometry`; the lost logic is :mod:`stark_ros.core.lost`.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from stark_ros.core import model_metadata as md
from stark_ros.core.appearance import AppearanceModel
from stark_ros.core.geometry import clip_box, crop_around, damp_size, map_box_back, normalize_patch, validate_box
from stark_ros.core.lost import LostMonitor, LostSettings, TargetState, TrackEventType
from stark_ros.core.params import SCORE_FROM_APPEARANCE, TrackerSettings
from stark_ros.runtime.session import GraphSession, ModelLoadError, RuntimeOptions, report_providers

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetResult:
    target_id: str
    box: np.ndarray                 # x, y, w, h in frame pixels
    score: float                    # sigmoid confidence; NaN for models without a score head
    state: TargetState
    frames_since_confident: int
    event: TrackEventType | None    # LOST or REACQUIRED on the frame it happened


@dataclass
class _Target:
    target_id: str
    templates: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (feat, mask, pos), batch 1 each
    box: np.ndarray
    monitor: LostMonitor
    # The first look of the target, for models whose score comes from appearance.
    appearance: AppearanceModel | None = None
    frame_id: int = 0


def check_frame(frame) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame must be HxWx3 RGB, got shape {frame.shape}")
    return frame


def resolve_model_dir(model_dir) -> Path:
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: model folder not found (expected {md.TEMPLATE_FILE} and {md.TRACK_FILE})")
    return path


class StarkRuntime:
    """Multi-target STARK on ONNX Runtime. See docs/architecture.md for the contract."""

    def __init__(self, model_dir, options: RuntimeOptions | None = None, lost: LostSettings | None = None,
                 update_interval: int | None = None, update_threshold: float | None = None,
                 score_source: str | None = None, size_update_rate: float | None = None):
        self.options = options or RuntimeOptions()
        model_dir = resolve_model_dir(model_dir)
        self.model_dir = model_dir
        self._template = GraphSession(model_dir / md.TEMPLATE_FILE, md.GRAPH_TEMPLATE, self.options)
        self._track = GraphSession(model_dir / md.TRACK_FILE, md.GRAPH_TRACK, self.options)
        if self._template.info != self._track.info:
            raise ModelLoadError(f"{model_dir}: {md.TEMPLATE_FILE} and {md.TRACK_FILE} come from different "
                                 f"exports ({self._template.info.source_sha256[:12]} vs "
                                 f"{self._track.info.source_sha256[:12]})")
        self.info = self._track.info
        settings = self.info.settings
        if update_interval is not None:
            settings = replace(settings, update_interval=int(update_interval))
        if update_threshold is not None:
            settings = replace(settings, update_threshold=float(update_threshold))
        if size_update_rate is not None:
            settings = replace(settings, size_update_rate=float(size_update_rate))
        if score_source is not None:
            # Another score than the export's (the score study compares them on one model).
            settings = replace(settings, score_source=score_source)
        self.settings: TrackerSettings = settings
        self._template.require_inputs([md.IN_IMAGE, md.IN_MASK])
        self._prefixes = md.TEMPLATE_INPUT_PREFIXES[: 1 + settings.num_dynamic_templates]
        self._track.require_inputs([n for p in self._prefixes for n in md.token_input_names(p)]
                                   + [md.IN_SEARCH_IMAGE, md.IN_SEARCH_MASK])
        # The model's own thresholds (from its score study, in its metadata) unless the caller
        # gives others; generic defaults for a model without a study.
        self.lost_settings = lost or self.info.lost or LostSettings()
        self._targets: dict[str, _Target] = {}
        self._ids = itertools.count(1)
        # Boxes the tracking graph returned as NaN/inf since start (the warm-up fails on any).
        self.nonfinite_outputs = 0
        report_providers(self.options.providers, self.active_providers, LOG)
        if not self.has_score_head:
            LOG.warning("STARK-%s has no score head: lost-target detection is unavailable; targets are "
                        "tracked without LOST/REACQUIRED events", self.info.variant)
        else:
            if self.uses_appearance_score:
                LOG.info("STARK-%s: scores come from the appearance of the tracked box (the export says "
                         "score_source: appearance), not from the score head", self.info.variant)
            if lost is not None:
                LOG.info("lost-target thresholds given by the caller: %s", lost)
            elif self.info.lost is not None:
                LOG.info("lost-target thresholds of the model (%s): %s", self.info.lost_source or "its metadata",
                         self.info.lost)
            else:
                LOG.warning("this model has no tuned lost-target thresholds (no score study in its metadata): "
                            "using the generic %s; run python -m stark_ros.evaluation.score_study --apply",
                            self.lost_settings)
        if self.options.warmup:
            self._warm_up()

    # ------------------------------------------------------------------------- properties
    @property
    def active_providers(self) -> tuple[str, ...]:
        return self._track.providers

    @property
    def has_score_head(self) -> bool:
        return self.settings.has_score_head

    @property
    def uses_appearance_score(self) -> bool:
        return self.has_score_head and self.settings.score_source == SCORE_FROM_APPEARANCE

    @property
    def target_ids(self) -> list[str]:
        return list(self._targets)

    def set_lost_settings(self, settings: LostSettings) -> None:
        self.lost_settings = settings
        for target in self._targets.values():
            target.monitor.settings = settings

    # ------------------------------------------------------------------------- targets
    def add_target(self, frame, box, target_id: str | None = None) -> str:
        """Start (or restart, for an id in use) a target on ``frame``. Raises ``InvalidBoxError``
        (a ``ValueError``) for NaN, zero-sized or fully outside boxes, ``ValueError`` for bad frames."""
        frame = check_frame(frame)
        box = validate_box(box, frame.shape)
        if target_id is None:
            target_id = self._next_id()
        template = self._template_tokens([frame], [box])[0]
        self._targets[str(target_id)] = _Target(
            target_id=str(target_id), templates=[template] * len(self._prefixes), box=box,
            monitor=LostMonitor(self.lost_settings, box),
            appearance=AppearanceModel(frame, box) if self.uses_appearance_score else None)
        return str(target_id)

    def remove_target(self, target_id: str) -> bool:
        return self._targets.pop(str(target_id), None) is not None

    def clear(self) -> list[str]:
        ids = list(self._targets)
        self._targets.clear()
        return ids

    def set_box(self, target_id: str, box) -> None:
        """Move a target's search region to ``box`` (e.g. a planner's correction) without touching
        its templates; the target counts as confidently seen there."""
        target = self._targets[str(target_id)]
        target.box = np.asarray(box, dtype=np.float64).copy()
        target.monitor = LostMonitor(self.lost_settings, target.box)

    def box_of(self, target_id: str) -> np.ndarray:
        return self._targets[str(target_id)].box.copy()

    # ------------------------------------------------------------------------- tracking
    def update(self, frame, target_ids=None) -> list[TargetResult]:
        """Track every target (or those in ``target_ids``) into ``frame``, in one batched call."""
        frame = check_frame(frame)
        if target_ids is None:
            targets = list(self._targets.values())
        else:
            wanted = {str(t) for t in target_ids}
            targets = [t for t in self._targets.values() if t.target_id in wanted]
        if not targets:
            return []
        s = self.settings
        height, width = frame.shape[:2]
        images, masks, centres, factors = [], [], [], []
        for t in targets:
            centre = t.monitor.search_centre(t.box)
            crop = crop_around(frame, centre, s.search_factor * t.monitor.search_scale, s.search_size)
            images.append(normalize_patch(crop.patch, s.mean, s.std))
            masks.append(crop.pad_mask[None].astype(np.float32))
            centres.append(centre)
            factors.append(crop.resize_factor)
        feeds = {md.IN_SEARCH_IMAGE: np.concatenate(images), md.IN_SEARCH_MASK: np.concatenate(masks)}
        for slot, prefix in enumerate(self._prefixes):
            for name, idx in zip(md.token_input_names(prefix), range(3), strict=True):
                feeds[name] = np.concatenate([t.templates[slot][idx] for t in targets])
        outputs = self._track.run(feeds)
        boxes = outputs[0]
        logits = outputs[1] if len(outputs) > 1 else None

        results, refresh = [], []
        for i, t in enumerate(targets):
            t.frame_id += 1
            predicted = clip_box(damp_size(map_box_back(boxes[i], centres[i], factors[i], s.search_size),
                                           centres[i], s.size_update_rate),
                                 height, width, s.clip_margin)
            if t.appearance is not None:
                score = t.appearance.similarity(frame, predicted)
            else:
                score = float(1.0 / (1.0 + math.exp(-float(logits[i, 0])))) if logits is not None else math.nan
            if not np.all(np.isfinite(predicted)):
                LOG.warning("target %s: the network returned a non-finite box; keeping the last one", t.target_id)
                self.nonfinite_outputs += 1
                predicted, score = t.box.copy(), 0.0 if logits is not None else math.nan
            reported, event = t.monitor.update(score, predicted)
            t.box = reported
            if (logits is not None and t.monitor.state is TargetState.TRACKING
                    and t.frame_id % s.update_interval == 0 and score > s.update_threshold):
                refresh.append(t)
            results.append(TargetResult(t.target_id, reported.copy(), score, t.monitor.state,
                                        t.monitor.frames_since_confident, event))
        if refresh:
            tokens = self._template_tokens([frame] * len(refresh), [t.box for t in refresh])
            for t, tok in zip(refresh, tokens, strict=True):
                t.templates[1] = tok
        return results

    # ------------------------------------------------------------------------- internals
    def _next_id(self) -> str:
        while True:
            candidate = str(next(self._ids))
            if candidate not in self._targets:
                return candidate

    def _template_tokens(self, frames, boxes) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        s = self.settings
        images, masks = [], []
        for frame, box in zip(frames, boxes, strict=True):
            crop = crop_around(frame, box, s.template_factor, s.template_size)
            images.append(normalize_patch(crop.patch, s.mean, s.std))
            masks.append(crop.pad_mask[None].astype(np.float32))
        feat, mask, pos = self._template.run({md.IN_IMAGE: np.concatenate(images), md.IN_MASK: np.concatenate(masks)})
        return [(feat[i:i + 1], mask[i:i + 1], pos[i:i + 1]) for i in range(len(images))]

    def _warm_up(self) -> None:
        s = self.settings
        frame = np.zeros((s.search_size, s.search_size, 3), dtype=np.uint8)
        box = np.array([s.search_size / 4, s.search_size / 4, s.search_size / 2, s.search_size / 2])
        tid = self.add_target(frame, box, target_id="__warmup__")
        try:
            # A model with NaN/inf weights loads and runs, then reports a fixed box as TRACKING:
            # refuse it here, where the caller can still fail cleanly (the node fails configure).
            if not all(np.all(np.isfinite(a)) for a in self._targets[tid].templates[0]):
                raise ModelLoadError(f"{self.model_dir / md.TEMPLATE_FILE}: non-finite outputs on the warm-up "
                                     f"frame (NaN or infinite weights?)")
            before = self.nonfinite_outputs
            self.update(frame, [tid])
            if self.nonfinite_outputs != before:
                raise ModelLoadError(f"{self.model_dir / md.TRACK_FILE}: non-finite box on the warm-up frame "
                                     f"(NaN or infinite weights?)")
        finally:
            self.remove_target(tid)


class RuntimeTracker:
    """Single-target adapter: ``initialize(frame, box)`` / ``track(frame) -> (box, score)``."""

    TARGET_ID = "target"

    def __init__(self, runtime: StarkRuntime):
        self.runtime = runtime

    def initialize(self, frame, box) -> None:
        self.runtime.clear()
        self.runtime.add_target(frame, box, target_id=self.TARGET_ID)

    def track(self, frame) -> tuple[np.ndarray, float]:
        (result,) = self.runtime.update(frame)
        return result.box, result.score
