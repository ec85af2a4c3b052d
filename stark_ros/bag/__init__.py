"""ROS 2 bags for evaluation: write sequences into bags, replay bags through the live node."""

from stark_ros.bag.io import BagError, read_bag, typestore, write_sequence_bag

__all__ = ["BagError", "read_bag", "typestore", "write_sequence_bag"]
