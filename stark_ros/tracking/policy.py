"""The one STARK tracking policy (numpy only), run on any :class:`Engine`.

Everything a tracker decides lives here, once, for the ONNX Runtime tracker
(:class:`stark_ros.runtime.StarkRuntime`), the PyTorch reference tracker
(:class:`stark_ros.model.ReferenceTracker`), the benchmarks and the evaluation tools: where the
search crop goes and how large it is (the lost logic grows it, :mod:`stark_ros.tracking.lost`), the crops
themselves and the mapping of the network's box back into the frame (:mod:`stark_ros.core.geometry`),
size damping and clipping, the score (score head sigmoid or appearance, :mod:`stark_ros.tracking.appearance`),
what happens to a non-finite output, the dynamic-template update rule and the LOST / REACQUIRED
events. An engine only evaluates the network: it turns normalised crops into template tokens and
(template tokens, search crops) into boxes and score logits, in batches.

Query rule: the policy reads the **first query** of the network's output, box and score alike. The
official STARK averages ``pred_boxes.view(-1, 4)`` but reads its score with
``pred_logits.view(-1).sigmoid().item()``, which only works with one query; every official model
and every preset here has one query, where both rules are the same. With several queries, the first
one is the only rule under which the box and the score that judges it (LOST, template updates) come
from the same query, and it is what the exported tracking graph returns (``boxes`` (B, 4)), so a
model tracks the same before and after export.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stark_ros.core.geometry import (
    CropPlan,
    clip_box,
    crop_around,
    crop_batch,
    damp_size,
    map_box_back,
    normalize_patch,
    plan_crop,
    validate_box,
)
from stark_ros.tracking.appearance import AppearanceModel
from stark_ros.tracking.confidence import MEANINGS, confidence
from stark_ros.tracking.lost import LostMonitor, LostSettings, TargetState, TrackEventType
from stark_ros.tracking.redetect import Redetector, RedetectSettings, Sighting
from stark_ros.tracking.settings import SCORE_FROM_HEAD, TrackerSettings, with_overrides

LOG = logging.getLogger(__name__)

# The query whose box and score the policy uses (see the module docstring).
QUERY = 0
# Score given to a frame whose network output was not finite (a model with a score head): the
# lowest confidence, so that a target whose network keeps failing goes LOST.
NONFINITE_SCORE = 0.0
# Inputs of the network carry one crop per row: (N, 3, S, S) images and (N, S, S) masks.
MASK_DTYPE = np.float32


class Engine(Protocol):
    """A STARK network evaluated by some library. Tokens are opaque to the policy: it stores them per
    target and template slot and hands them back to :meth:`predict`. An engine that can cut the crops
    on its own device also has ``crop(frame, plans, mean, std) -> (images, masks)`` (see
    :func:`network_inputs`); its images and masks go straight back to it."""

    def encode_templates(self, images: np.ndarray, masks: np.ndarray) -> list[Any]:
        """(N, 3, T, T) normalised template crops + (N, T, T) float pad masks (1 = padding) ->
        N tokens, one per crop."""

    def predict(self, templates_by_slot: list[list[Any]], images: np.ndarray,
                masks: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Template tokens per slot (the initial template first; each a list of N tokens) + (N, 3, S, S)
        search crops + (N, S, S) masks -> boxes (N, Q, 4) cx, cy, w, h normalised to the search
        crop, score logits (N, Q), or None for a model without a score head."""


@dataclass(frozen=True)
class TargetResult:
    target_id: str
    box: np.ndarray                 # x, y, w, h in frame pixels
    score: float                    # confidence (sigmoid or appearance); NaN for models without a score head
    state: TargetState
    frames_since_confident: int
    event: TrackEventType | None    # LOST or REACQUIRED on the frame it happened


@dataclass
class _Target:
    target_id: str
    templates: list[Any]            # one engine token per template slot
    box: np.ndarray
    monitor: LostMonitor
    # The first look of the target, for models whose score comes from appearance.
    appearance: AppearanceModel | None = None
    # Frames this target was tracked on since it started: the clock of the template-update rule.
    frames_tracked: int = 0


@dataclass(frozen=True)
class _Search:
    """Where one target's search crop was cut: what the network's box is relative to."""

    centre: np.ndarray
    resize_factor: float


def check_frame(frame) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame must be HxWx3 RGB, got shape {frame.shape}")
    return frame


def sigmoid(logit: float) -> float:
    """The score head's confidence; written so that no finite logit overflows ``math.exp``."""
    x = float(logit)
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def network_input(frame: np.ndarray, box, factor: float, size: int, settings: TrackerSettings):
    """The crop of ``frame`` around ``box`` as the network takes it: ((1, 3, S, S) float32 image,
    (1, S, S) float32 pad mask, the crop)."""
    crop = crop_around(frame, box, factor, size)
    return (normalize_patch(crop.patch, settings.mean, settings.std),
            crop.pad_mask[None].astype(MASK_DTYPE), crop)


def network_inputs(engine, frame: np.ndarray, plans: list[CropPlan], settings: TrackerSettings):
    """The crops of ``plans`` as the network takes them, in one batched step: (N, 3, S, S) images and
    (N, S, S) masks, made by the engine where it can crop on its own device (an engine's optional
    ``crop(frame, plans, mean, std)``, e.g. ONNX Runtime on CUDA, whose outputs may stay there), else
    with numpy and OpenCV (:func:`~stark_ros.core.geometry.crop_batch`, the same numbers)."""
    crop = getattr(engine, "crop", None)
    if crop is not None:
        return crop(frame, plans, settings.mean, settings.std)
    return crop_batch(frame, plans, settings.mean, settings.std)


class TrackingPolicy:
    """Multi-target STARK tracking on ``engine``; one batched engine call per frame for all targets.

    ``settings`` are the model's (from its ONNX metadata or its checkpoint's config); ``overrides``
    (:data:`~stark_ros.tracking.settings.OVERRIDABLE` names, None = the model's) are a caller's
    choices, applied here and nowhere else. ``lost`` are the caller's lost-target thresholds, else
    ``model_lost`` (the model's score study), else the generic :class:`LostSettings`, which the
    policy says in the log. ``redetect`` / ``model_redetect`` are the re-detection settings while
    LOST (:mod:`stark_ros.tracking.redetect`) the same way.
    """

    def __init__(self, engine: Engine, settings: TrackerSettings, lost: LostSettings | None = None, *,
                 model_lost: LostSettings | None = None, lost_source: str = "", variant: str = "",
                 redetect: RedetectSettings | None = None, model_redetect: RedetectSettings | None = None,
                 **overrides):
        self.engine = engine
        self.settings = with_overrides(settings, **overrides)
        self.variant = variant
        self.lost_settings = lost or model_lost or LostSettings()
        self.redetector = Redetector(redetect or model_redetect or RedetectSettings())
        self._slots = 1 + self.settings.num_dynamic_templates
        self._targets: dict[str, _Target] = {}
        self._ids = itertools.count(1)
        # Outputs the network returned as NaN/inf since start (the runtime's warm-up fails on any).
        self.nonfinite_outputs = 0
        self._say_where_scores_come_from(lost, model_lost, lost_source, variant)

    def _say_where_scores_come_from(self, lost, model_lost, lost_source: str, variant: str) -> None:
        if not self.has_score_head:
            LOG.warning("STARK-%s has no score head: lost-target detection is unavailable; targets are "
                        "tracked without LOST/REACQUIRED events", variant)
            return
        if self.uses_appearance_score:
            LOG.info("STARK-%s: scores come from %s (the model says score_source: %s)", variant,
                     MEANINGS[self.settings.score_source],
                     self.settings.score_source)
        if lost is not None:
            LOG.info("lost-target thresholds given by the caller: %s", lost)
        elif model_lost is not None:
            LOG.info("lost-target thresholds of the model (%s): %s", lost_source or "its metadata", model_lost)
        else:
            LOG.warning("this model has no tuned lost-target thresholds (no score study in its metadata): "
                        "using the generic %s; run python -m stark_ros.evaluation.score_study --apply",
                        self.lost_settings)

    # ------------------------------------------------------------------------- properties
    @property
    def has_score_head(self) -> bool:
        return self.settings.has_score_head

    @property
    def uses_appearance_score(self) -> bool:
        """Whether the confidence needs the appearance score (every source but the head alone)."""
        return self.has_score_head and self.settings.score_source != SCORE_FROM_HEAD

    @property
    def target_ids(self) -> list[str]:
        return list(self._targets)

    @property
    def redetect_settings(self) -> RedetectSettings:
        return self.redetector.settings

    def set_redetect_settings(self, settings: RedetectSettings) -> None:
        """New re-detection settings; scans under way start afresh."""
        self.redetector = Redetector(settings)

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
        target_id = self._next_id() if target_id is None else str(target_id)
        (template,) = self._encode_templates(frame, [box])
        # The dynamic templates start as copies of the initial one (the official rule).
        self._targets[target_id] = _Target(
            target_id=target_id, templates=[template] * self._slots, box=box,
            monitor=LostMonitor(self.lost_settings, box),
            appearance=AppearanceModel(frame, box) if self.uses_appearance_score else None)
        self.redetector.forget(target_id)
        return target_id

    def remove_target(self, target_id: str) -> bool:
        self.redetector.forget(str(target_id))
        return self._targets.pop(str(target_id), None) is not None

    def clear(self) -> list[str]:
        ids = list(self._targets)
        self._targets.clear()
        for target_id in ids:
            self.redetector.forget(target_id)
        return ids

    def set_box(self, target_id: str, box) -> None:
        """Move a target's search region to ``box`` (e.g. a planner's correction) without touching
        its templates; the target counts as confidently seen there."""
        target = self._targets[str(target_id)]
        target.box = np.asarray(box, dtype=np.float64).copy()
        target.monitor = LostMonitor(self.lost_settings, target.box)
        self.redetector.forget(target.target_id)

    def box_of(self, target_id: str) -> np.ndarray:
        return self._targets[str(target_id)].box.copy()

    # ------------------------------------------------------------------------- tracking
    def update(self, frame, target_ids=None) -> list[TargetResult]:
        """Track every target (or those in ``target_ids``) into ``frame``, in one batched engine call."""
        frame = check_frame(frame)
        targets = self._select(target_ids)
        if not targets:
            return []
        s = self.settings
        centres = [t.monitor.search_centre(t.box) for t in targets]
        plans = [plan_crop(frame.shape, centre, s.search_factor * t.monitor.search_scale, s.search_size)
                 for t, centre in zip(targets, centres, strict=True)]
        searches = [_Search(centre, plan.resize_factor) for centre, plan in zip(centres, plans, strict=True)]
        images, masks = network_inputs(self.engine, frame, plans, s)
        boxes, logits = self.engine.predict([[t.templates[slot] for t in targets] for slot in range(self._slots)],
                                            images, masks)
        results = [self._step(frame, t, boxes[i, QUERY], None if logits is None else float(logits[i, QUERY]),
                              searches[i]) for i, t in enumerate(targets)]
        results = self._redetect(frame, targets, results)
        self._refresh_templates(frame, [t for t, r in zip(targets, results, strict=True)
                                        if self._template_due(t, r.score)])
        return results

    def _step(self, frame, target: _Target, net_box, logit: float | None, search: _Search) -> TargetResult:
        """One target's frame after the network: box and score, lost logic, result."""
        target.frames_tracked += 1
        predicted, score = self._box_and_score(frame, target, net_box, logit, search)
        target.box, event = target.monitor.observe(score, predicted)
        return self._result(target, score, event)

    def _result(self, target: _Target, score: float, event: TrackEventType | None) -> TargetResult:
        return TargetResult(target.target_id, target.monitor.reported_box(target.box), score,
                            target.monitor.state, target.monitor.frames_since_confident, event)

    def _redetect(self, frame, targets: list[_Target], results: list[TargetResult]) -> list[TargetResult]:
        """Re-detection for this frame's LOST targets (:mod:`stark_ros.tracking.redetect`): their
        candidates' and tiles' crops in one batched engine call, after the targets' own; a target
        whose candidate has held is REACQUIRED on this frame, at the candidate's box."""
        lost = []
        for t, r in zip(targets, results, strict=True):
            if r.state is TargetState.LOST:
                lost.append((t.target_id, t.monitor.last_confident_box))
            else:
                self.redetector.forget(t.target_id)
        requests = self.redetector.plan(frame.shape, lost, self.settings.search_factor) if lost else []
        if not requests:
            return results
        s = self.settings
        by_id = {t.target_id: t for t in targets}
        # The same batched crop step as the targets' own (on the engine's device where it has one).
        plans = [plan_crop(frame.shape, r.box, s.search_factor, s.search_size) for r in requests]
        boxes, logits = self.engine.predict(
            [[by_id[r.target_id].templates[slot] for r in requests] for slot in range(self._slots)],
            *network_inputs(self.engine, frame, plans, s))
        found = {}
        for i, request in enumerate(requests):
            target = by_id[request.target_id]
            logit = None if logits is None else float(logits[i, QUERY])
            if not (np.all(np.isfinite(boxes[i, QUERY])) and (logit is None or math.isfinite(logit))):
                continue     # a failed crop finds nothing (the target's own crop counts failures)
            box, score = self._box_and_score(frame, target, boxes[i, QUERY], logit,
                                             _Search(request.box, plans[i].resize_factor))
            head = sigmoid(logit) if self.uses_appearance_score and logit is not None else math.nan
            found.setdefault(request.target_id, []).append(Sighting(box, score, request.follows_candidate, head))
        out = list(results)
        for k, (target, result) in enumerate(zip(targets, results, strict=True)):
            if result.state is not TargetState.LOST:
                continue
            accepted = self.redetector.judge(target.target_id, found.get(target.target_id, []), result.score,
                                             target.monitor.relative)
            if accepted is not None:
                target.box = accepted.box.copy()
                out[k] = self._result(target, accepted.score, target.monitor.reacquire(accepted.box))
        return out

    def _box_and_score(self, frame, target: _Target, net_box, logit: float | None,
                       search: _Search) -> tuple[np.ndarray, float]:
        """The network's box in frame pixels (size damped, clipped) and its confidence; the last box
        and the lowest confidence when the network's output is not finite."""
        if not (np.all(np.isfinite(net_box)) and (logit is None or math.isfinite(logit))):
            # Checked on the network's own numbers: clipping would turn a NaN box into a finite one.
            LOG.warning("target %s: the network returned a non-finite output; keeping the last box",
                        target.target_id)
            self.nonfinite_outputs += 1
            return target.box.copy(), NONFINITE_SCORE if self.has_score_head else math.nan
        s = self.settings
        height, width = frame.shape[:2]
        box = map_box_back(net_box, search.centre, search.resize_factor, s.search_size)
        box = clip_box(damp_size(box, search.centre, s.size_update_rate), height, width, s.clip_margin)
        head = sigmoid(logit) if logit is not None else math.nan
        if target.appearance is not None:
            return box, float(confidence(s.score_source, head, target.appearance.similarity(frame, box)))
        return box, head

    def _template_due(self, target: _Target, score: float) -> bool:
        """The official dynamic-template rule (every ``update_interval`` frames, when the confidence
        beats ``update_threshold``), on the confidence the policy reports (so a model scored by
        appearance refreshes on appearance), and never while LOST: a template cut around a held
        box would teach the tracker the background."""
        s = self.settings
        return (self.has_score_head and target.monitor.state is TargetState.TRACKING
                and target.frames_tracked % s.update_interval == 0 and score > s.update_threshold)

    def _refresh_templates(self, frame, targets: list[_Target]) -> None:
        if not targets:
            return
        tokens = self._encode_templates(frame, [t.box for t in targets])
        for target, token in zip(targets, tokens, strict=True):
            # Slot 0 stays the initial template; slot 1 is the dynamic one.
            target.templates[1] = token

    # ------------------------------------------------------------------------- internals
    def _select(self, target_ids) -> list[_Target]:
        if target_ids is None:
            return list(self._targets.values())
        wanted = {str(t) for t in target_ids}
        return [t for t in self._targets.values() if t.target_id in wanted]

    def _next_id(self) -> str:
        while True:
            candidate = str(next(self._ids))
            if candidate not in self._targets:
                return candidate

    def _encode_templates(self, frame, boxes) -> list[Any]:
        s = self.settings
        plans = [plan_crop(frame.shape, box, s.template_factor, s.template_size) for box in boxes]
        return self.engine.encode_templates(*network_inputs(self.engine, frame, plans, s))


class SingleTargetTracker:
    """The evaluation tools' protocol on any multi-target tracker (a :class:`TrackingPolicy` on its
    engine: :class:`~stark_ros.runtime.StarkRuntime`, :class:`~stark_ros.model.ReferenceTracker`):
    ``initialize(frame, box)`` / ``track(frame) -> (box, score)``; ``last_result`` keeps the frame's
    full result (state, event)."""

    TARGET_ID = "target"

    def __init__(self, policy: TrackingPolicy):
        self.policy = policy
        self.last_result: TargetResult | None = None

    def initialize(self, frame, box) -> None:
        self.policy.clear()
        self.policy.add_target(frame, box, target_id=self.TARGET_ID)
        self.last_result = None

    def track(self, frame) -> tuple[np.ndarray, float]:
        self._require_target()
        (result,) = self.policy.update(frame, [self.TARGET_ID])
        self.last_result = result
        return result.box, result.score

    def set_box(self, box) -> None:
        """Search around ``box`` next (teacher forcing in the official-parity replays)."""
        self._require_target()
        self.policy.set_box(self.TARGET_ID, box)

    def _require_target(self) -> None:
        if self.TARGET_ID not in self.policy.target_ids:
            raise RuntimeError("initialize() must come first")
