"""Tracking sequences: readers for the benchmark layouts (torch-free, ROS-free).

Every reader returns :class:`Sequence` objects; frames are read lazily as RGB uint8 arrays.
Shared by the evaluation tools, the trainer, the bag writer and the demo.
"""

from stark_ros.datasets.base import (
    MissingSharedDataError,
    Sequence,
    load_simple_sequence,
    read_boxes,
    read_frame_rgb,
    shared_dir,
    shared_sot_sequences,
)

__all__ = [
    "MissingSharedDataError",
    "Sequence",
    "load_simple_sequence",
    "read_boxes",
    "read_frame_rgb",
    "shared_dir",
    "shared_sot_sequences",
]
