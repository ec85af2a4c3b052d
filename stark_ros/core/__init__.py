"""Torch-free, ROS-free vocabulary shared by every layer: boxes, geometry, images, stamps, where installed files are."""
