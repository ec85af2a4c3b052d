"""The PyTorch reference tracker: the tracking policy (:mod:`stark_ros.core.policy`) on the
:class:`~stark_ros.model.engine.TorchEngine`.

The policy is the one the ONNX runtime runs, with the same settings from the same place (the
model's: here its checkpoint's config, there the export's metadata, which the exporter writes from
that config), so ``evaluate --tracker reference:CKPT`` and ``--tracker runtime:DIR`` of its export
measure one algorithm, and the two trackers differ only in how the network is evaluated. A
checkpoint carries no score study: its lost thresholds are the generic ones (the policy says so in
the log) unless the caller gives some; the official tracker, which never loses a target, is
``lost=NEVER_LOST``.
"""

from __future__ import annotations

import numpy as np

from stark_ros.core.lost import LostSettings
from stark_ros.core.params import TrackerSettings
from stark_ros.core.policy import SingleTargetTracker, TrackingPolicy
from stark_ros.model.engine import TorchEngine
from stark_ros.model.stark import StarkModel


class ReferenceTracker(SingleTargetTracker):
    """``initialize(frame, box)`` then ``track(frame) -> (box, score)`` per frame (frames RGB uint8,
    boxes x, y, w, h). Score as the runtime's: sigmoid of the score head or appearance (the model's
    ``score_source``), NaN for models without a score head. ``policy`` is the multi-target tracker."""

    def __init__(self, model: StarkModel, settings: TrackerSettings | None = None,
                 lost: LostSettings | None = None):
        super().__init__(TrackingPolicy(TorchEngine(model), settings or model.config.tracker, lost=lost,
                                        variant=model.config.variant))
        self.model = self.policy.engine.model

    @property
    def settings(self) -> TrackerSettings:
        return self.policy.settings

    @property
    def state(self) -> np.ndarray | None:
        """The box the next search is centred on (None before ``initialize``)."""
        if self.TARGET_ID not in self.policy.target_ids:
            return None
        return self.policy.box_of(self.TARGET_ID)

    @state.setter
    def state(self, box) -> None:
        # Teacher forcing (the official-parity replays): search around a given box next.
        self.policy.set_box(self.TARGET_ID, box)
