"""The torch-free multi-target STARK tracker on ONNX Runtime: the tracking policy
(:mod:`stark_ros.core.policy`: crops, lost logic, score, template updates) on the
:class:`~stark_ros.runtime.engine.OrtEngine`. This module adds what only a deployed model has:
settings read from its ONNX metadata, execution providers, and the warm-up checks.
"""

from __future__ import annotations

import logging

import numpy as np

from stark_ros.core import model_metadata as md
from stark_ros.core.lost import LostSettings
from stark_ros.core.policy import SingleTargetTracker, TargetResult, TrackingPolicy, check_frame, with_overrides
from stark_ros.runtime.engine import OrtEngine, resolve_model_dir
from stark_ros.runtime.session import ModelLoadError, RuntimeOptions, report_providers

LOG = logging.getLogger(__name__)

__all__ = ["RuntimeTracker", "StarkRuntime", "TargetResult", "check_frame", "resolve_model_dir"]


class StarkRuntime(TrackingPolicy):
    """Multi-target STARK on ONNX Runtime. See docs/architecture.md for the contract."""

    def __init__(self, model_dir, options: RuntimeOptions | None = None, lost: LostSettings | None = None,
                 update_interval: int | None = None, update_threshold: float | None = None,
                 score_source: str | None = None, size_update_rate: float | None = None):
        self.options = options or RuntimeOptions()
        engine = OrtEngine(model_dir, self.options)
        self.model_dir = engine.model_dir
        self.info: md.ModelInfo = engine.info
        # Another score source than the export's is for the score study, which compares them on one model.
        settings = with_overrides(
            self.info.settings, update_interval=None if update_interval is None else int(update_interval),
            update_threshold=None if update_threshold is None else float(update_threshold),
            size_update_rate=None if size_update_rate is None else float(size_update_rate),
            score_source=score_source)
        report_providers(self.options, engine.providers, LOG)
        # The model's own thresholds (from its score study, in its metadata) unless the caller gives
        # others; generic defaults, said in the log, for a model without a study.
        super().__init__(engine, settings, lost=lost, model_lost=self.info.lost, lost_source=self.info.lost_source,
                         variant=self.info.variant)
        if self.options.warmup:
            self._warm_up()

    @property
    def active_providers(self) -> tuple[str, ...]:
        return self.engine.providers

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


class RuntimeTracker(SingleTargetTracker):
    """Single-target adapter of a :class:`StarkRuntime`: ``initialize(frame, box)`` /
    ``track(frame) -> (box, score)``."""

    def __init__(self, runtime: StarkRuntime):
        super().__init__(runtime)
        self.runtime = runtime
