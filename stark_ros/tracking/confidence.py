"""A target's confidence from its two scores: the score head's sigmoid and the appearance score.

The model's ``score_source`` (:data:`stark_ros.tracking.settings.SCORE_SOURCES`) names one of these.
Each is a presence confidence in [0, 1]; the lost logic judges it (absolutely or relative to the
target's first frames). The score study (:mod:`stark_ros.evaluation.score_study`) measures every one
on the same recorded scores, and the tracking policy computes the one its model names, so the two
can never disagree on what a combination means.
"""

from __future__ import annotations

import numpy as np

from stark_ros.tracking.settings import (
    SCORE_FROM_APPEARANCE,
    SCORE_FROM_HEAD,
    SCORE_FROM_MEAN,
    SCORE_FROM_MIN,
    SCORE_FROM_PRODUCT,
)

# (head, appearance) -> confidence; numpy arrays (the study) or floats (the policy) alike.
CONFIDENCES = {
    SCORE_FROM_HEAD: lambda head, appearance: head,
    SCORE_FROM_APPEARANCE: lambda head, appearance: appearance,
    # Both must hold: a box on a look-alike (appearance high) or on background the head still likes
    # (head high) is low on the other score.
    SCORE_FROM_PRODUCT: lambda head, appearance: head * appearance,
    SCORE_FROM_MIN: np.minimum,
    SCORE_FROM_MEAN: lambda head, appearance: (head + appearance) / 2,
}

# What each confidence is, in the words of a log line.
MEANINGS = {
    SCORE_FROM_HEAD: "the score head",
    SCORE_FROM_APPEARANCE: "the appearance of the tracked box",
    SCORE_FROM_PRODUCT: "the product of the score head and the appearance of the tracked box",
    SCORE_FROM_MIN: "the lower of the score head and the appearance of the tracked box",
    SCORE_FROM_MEAN: "the mean of the score head and the appearance of the tracked box",
}


def confidence(source: str, head, appearance):
    """The confidence ``source`` gives for these scores (arrays elementwise)."""
    return CONFIDENCES[source](head, appearance)
