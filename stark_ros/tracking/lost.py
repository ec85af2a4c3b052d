"""Lost-target logic (beyond the official tracker, which never gives up on a target).

A target is LOST once its score stays below ``lost_threshold`` for ``lost_frames`` consecutive
frames. While lost, the reported box is held at the last confident box and the search region
grows step by step (capped) around it, so a target that moved while hidden can still be found;
or, with ``follow_while_lost``, the box and the search follow the network's own box.
It is REACQUIRED once the score has exceeded ``reacquire_threshold`` on ``reacquire_frames``
more frames than it fell below it since the streak began; while such a streak builds up, the
search and the reported box stay where the target was last seen. Hysteresis in score (two
thresholds) and in frames (both directions) keeps a flickering score from flapping LOST / REACQUIRED.

With ``reference_frames`` > 0 the thresholds judge the score *relative to the target's own*: its
share of the median of the target's first ``reference_frames`` scores judged present (at or above
``lost_threshold`` against the reference so far; the first frame after initialisation, when the
target was just given, always is), capped at 1. Scores of a well-tracked target differ widely
between targets (a colour score of 0.3 is normal for one and a sign of absence for another), so one
absolute threshold either reports some targets LOST while they are tracked or misses absences of
others. Only scores judged present teach the reference, so a target that vanishes right after its
initialisation does not make its absence the norm. Only the judgement changes: the reported score
stays the model's.

The thresholds belong to a model's score: the exporter writes those its score study chose into the
model's metadata (:data:`stark_ros.tracking.model_metadata.KEY_LOST_SETTINGS`), and the runtime takes
them as its defaults. ``LostSettings()`` (the defaults here) is for a model without a study.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np

from stark_ros.tracking.settings import check_shares, settings_from_dict


class TargetState(str, Enum):
    TRACKING = "TRACKING"
    LOST = "LOST"


class TrackEventType(str, Enum):
    INITIALIZED = "INITIALIZED"
    LOST = "LOST"
    REACQUIRED = "REACQUIRED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class LostSettings:
    # Generic defaults for a sigmoid score (a model without a score study); a studied model brings
    # its own in its metadata.
    lost_threshold: float = 0.3
    lost_frames: int = 5
    reacquire_threshold: float = 0.5
    reacquire_frames: int = 3
    # Each lost frame multiplies the search crop's side by this, up to max_search_growth.
    search_growth_per_frame: float = 1.1
    max_search_growth: float = 2.0
    # While LOST, search around (and report) the network's own box instead of the last confident
    # one. Holding still suits a target that vanished where it stood; following suits a moving
    # camera or target, which has left a held search region by the time it is seen again. Chosen
    # per model on the validation split (its score study), as the thresholds are.
    follow_while_lost: bool = False
    # Judge scores relative to the median of the first this-many judged present (0: absolute).
    reference_frames: int = 0

    def __post_init__(self):
        check_shares(self, ("lost_threshold", "reacquire_threshold"))
        if self.reacquire_threshold < self.lost_threshold:
            raise ValueError(f"reacquire_threshold ({self.reacquire_threshold}) must not be below "
                             f"lost_threshold ({self.lost_threshold})")
        for name in ("lost_frames", "reacquire_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.search_growth_per_frame < 1.0 or self.max_search_growth < 1.0:
            raise ValueError("search growth factors must be >= 1")
        if int(self.reference_frames) < 0:
            raise ValueError(f"reference_frames must be >= 0, got {self.reference_frames}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LostSettings:
        return settings_from_dict(cls, d, "lost settings")


# The smallest reference a relative score is divided by: a target whose first scores are all near 0
# is judged on its score nearly as it is, not on noise blown up by a tiny divisor.
MIN_REFERENCE_SCORE = 0.01

# Thresholds of 0: no score is below them, so a target is never LOST (every box is the network's).
NEVER_LOST = LostSettings(lost_threshold=0.0, reacquire_threshold=0.0)


class LostMonitor:
    """Per-target state machine. :meth:`observe` every frame's score and predicted box; it says what
    to report, where to search next and whether an event happened."""

    def __init__(self, settings: LostSettings, box):
        self.settings = settings
        self.state = TargetState.TRACKING
        self.frames_since_confident = 0
        self.lost_for = 0
        self.last_confident_box = np.asarray(box, dtype=np.float64).copy()
        # While LOST: confident frames beyond doubtful ones since a reacquisition began.
        self.reacquire_streak = 0
        # The first scores judged present (with reference_frames > 0): the target's own level.
        self.first_scores: list[float] = []

    def search_centre(self, current_box) -> np.ndarray:
        """The box the next search crop is centred on: the current box while tracking, the last
        confident box while lost (the current box, which follows the network, with
        ``follow_while_lost``)."""
        if self.state is not TargetState.LOST or self.settings.follow_while_lost:
            return np.asarray(current_box, dtype=np.float64)
        # Not a box found while lost: one found in the grown search region is coarse, and re-centring
        # the next search on it made the score fall again on the default model (vot2014_car).
        return self.last_confident_box

    @property
    def search_scale(self) -> float:
        """Multiplier of the search crop side for the next frame (1 while tracking)."""
        if self.state is not TargetState.LOST:
            return 1.0
        return min(self.settings.search_growth_per_frame ** self.lost_for, self.settings.max_search_growth)

    def _box_while_lost(self, predicted_box: np.ndarray) -> np.ndarray:
        return (predicted_box if self.settings.follow_while_lost else self.last_confident_box).copy()

    @property
    def reference_score(self) -> float | None:
        """The target's own score level (with ``reference_frames``); None before its first frame."""
        if not self.first_scores:
            return None
        return max(float(np.median(self.first_scores)), MIN_REFERENCE_SCORE)

    def judged(self, score: float) -> float:
        """The score the thresholds judge: the score itself, or (with ``reference_frames``) its
        share of the target's reference score, capped at 1 (1 on the first frame)."""
        frames = int(self.settings.reference_frames)
        if frames == 0:
            return score
        judged = self.relative(score)
        if len(self.first_scores) < frames and judged >= self.settings.lost_threshold:
            self.first_scores.append(score)
        return judged

    def relative(self, score: float) -> float:
        """``score`` as the thresholds judge it, without teaching the reference (for boxes that
        are not the target's own track: re-detection's)."""
        if int(self.settings.reference_frames) == 0:
            return score
        reference = self.reference_score
        return 1.0 if reference is None else min(1.0, score / reference)

    def reported_box(self, search_box) -> np.ndarray:
        """The box a caller is told: the tracked box, and while LOST the last confident box, where
        the target was last seen (the search may follow the network elsewhere meanwhile)."""
        if self.state is TargetState.LOST:
            return self.last_confident_box.copy()
        return np.asarray(search_box, dtype=np.float64).copy()

    def reacquire(self, box) -> TrackEventType:
        """The target is found again at ``box`` (by the local search or by re-detection)."""
        self.state = TargetState.TRACKING
        self.frames_since_confident = 0
        self.lost_for = 0
        self.reacquire_streak = 0
        self.last_confident_box = np.asarray(box, dtype=np.float64).copy()
        return TrackEventType.REACQUIRED

    def stay_lost(self) -> None:
        self.frames_since_confident += 1
        self.lost_for += 1

    def observe(self, score: float, predicted_box) -> tuple[np.ndarray, TrackEventType | None]:
        """Returns (box to search around next, event or None); the box to report is
        :meth:`reported_box` of it. NaN scores (a model without a score head) never change the state."""
        s = self.settings
        predicted_box = np.asarray(predicted_box, dtype=np.float64)
        if math.isnan(score):
            self.last_confident_box = predicted_box.copy()
            return predicted_box, None
        score = self.judged(score)
        if self.state is TargetState.LOST:
            if score > s.reacquire_threshold:
                self.reacquire_streak += 1
                if self.reacquire_streak >= s.reacquire_frames:
                    return predicted_box, self.reacquire(predicted_box)
            elif self.reacquire_streak > 0:
                # One doubtful frame slows a reacquisition under way instead of restarting it: a
                # target coming back into view scores high on most frames, not on every one.
                self.reacquire_streak -= 1
            self.stay_lost()
            return self._box_while_lost(predicted_box), None
        if score >= s.lost_threshold:
            self.frames_since_confident = 0
            self.last_confident_box = predicted_box.copy()
            return predicted_box, None
        self.frames_since_confident += 1
        if self.frames_since_confident >= s.lost_frames:
            self.state = TargetState.LOST
            self.lost_for = 1
            return self._box_while_lost(predicted_box), TrackEventType.LOST
        # Unsure but not yet lost: follow the prediction, as the official tracker would.
        return predicted_box, None
