"""The torch-free multi-target STARK tracker on ONNX Runtime: the tracking policy
(:mod:`stark_ros.tracking.policy`: crops, lost logic, score, template updates) on the
:class:`~stark_ros.runtime.engine.OrtEngine`. This module adds what only a deployed model has:
settings read from its ONNX metadata, execution providers, and the warm-up check.
"""

from __future__ import annotations

import logging

import numpy as np

from stark_ros.runtime.engine import OrtEngine
from stark_ros.runtime.session import ModelLoadError, RuntimeOptions, report_providers
from stark_ros.tracking import model_metadata as md
from stark_ros.tracking.lost import LostSettings
from stark_ros.tracking.policy import TrackingPolicy, network_input

LOG = logging.getLogger(__name__)


class StarkRuntime(TrackingPolicy):
    """Multi-target STARK on ONNX Runtime: the policy on an :class:`OrtEngine`, with the model's
    settings and lost thresholds from its metadata. ``overrides`` are
    :data:`~stark_ros.tracking.settings.OVERRIDABLE` settings (another score source than the
    export's is for the score study, which compares them on one model). See docs/architecture.md
    for the contract."""

    def __init__(self, model_dir, options: RuntimeOptions | None = None, lost: LostSettings | None = None,
                 **overrides):
        self.options = options or RuntimeOptions()
        engine = OrtEngine(model_dir, self.options)
        self.model_dir = engine.model_dir
        self.info: md.ModelInfo = engine.info
        report_providers(self.options, engine.providers, LOG)
        # The model's own thresholds (from its score study, in its metadata) unless the caller gives
        # others; generic defaults, said in the log, for a model without a study.
        super().__init__(engine, self.info.settings, lost, model_lost=self.info.lost,
                         lost_source=self.info.lost_source, variant=self.info.variant,
                         model_redetect=self.info.redetect, **overrides)
        if self.options.warmup:
            self._warm_up()

    @property
    def active_providers(self) -> tuple[str, ...]:
        return self.engine.providers

    def _warm_up(self) -> None:
        """Both graphs once, on the crops of a blank frame (the first run also builds TensorRT's
        engines). A model with NaN/inf weights loads and runs, then reports a fixed box as TRACKING:
        refuse it here, where the caller can still fail cleanly (the node fails configure)."""
        s = self.settings
        frame = np.zeros((s.search_size, s.search_size, 3), dtype=np.uint8)
        box = np.array([s.search_size / 4, s.search_size / 4, s.search_size / 2, s.search_size / 2])
        image, mask, _ = network_input(frame, box, s.template_factor, s.template_size, s)
        tokens = self.engine.encode_templates(image, mask)
        if not all(np.all(np.isfinite(part)) for token in tokens for part in token):
            raise ModelLoadError(f"{self.model_dir / md.TEMPLATE_FILE}: non-finite outputs on the warm-up "
                                 f"frame (NaN or infinite weights?)")
        image, mask, _ = network_input(frame, box, s.search_factor, s.search_size, s)
        boxes, logits = self.engine.predict([tokens] * (1 + s.num_dynamic_templates), image, mask)
        if not (np.all(np.isfinite(boxes)) and (logits is None or np.all(np.isfinite(logits)))):
            raise ModelLoadError(f"{self.model_dir / md.TRACK_FILE}: non-finite box on the warm-up frame "
                                 f"(NaN or infinite weights?)")
