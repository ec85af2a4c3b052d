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
from stark_ros.datasets.benchmarks import (
    READERS,
    load_dataset,
    load_got10k,
    load_lasot,
    load_otb,
    load_simple,
    load_trackingnet,
    load_uav123,
    load_vot,
    polygons_to_boxes,
)

__all__ = [
    "READERS",
    "MissingSharedDataError",
    "Sequence",
    "load_dataset",
    "load_got10k",
    "load_lasot",
    "load_otb",
    "load_simple",
    "load_simple_sequence",
    "load_trackingnet",
    "load_uav123",
    "load_vot",
    "polygons_to_boxes",
    "read_boxes",
    "read_frame_rgb",
    "shared_dir",
    "shared_sot_sequences",
]
