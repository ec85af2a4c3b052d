"""The PyTorch reference tracker: the tracking policy (:mod:`stark_ros.tracking.policy`) on the
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

from stark_ros.model.engine import TorchEngine
from stark_ros.model.stark import StarkModel
from stark_ros.tracking.lost import LostSettings
from stark_ros.tracking.policy import TrackingPolicy


class ReferenceTracker(TrackingPolicy):
    """Multi-target STARK in PyTorch: the policy on a :class:`TorchEngine`, with the settings of the
    model's config; the same shape as :class:`~stark_ros.runtime.StarkRuntime` (``lost``, then
    :data:`~stark_ros.tracking.settings.OVERRIDABLE` ``overrides``). Score as the runtime's: sigmoid
    of the score head or appearance (the model's ``score_source``), NaN for models without a score
    head. Single target: :class:`~stark_ros.tracking.policy.SingleTargetTracker` around it."""

    def __init__(self, model: StarkModel, lost: LostSettings | None = None, **overrides):
        super().__init__(TorchEngine(model), model.config.tracker, lost, variant=model.config.variant, **overrides)
