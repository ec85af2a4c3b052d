"""Torch-free, ROS-free building blocks shared by every layer (geometry, tracker parameters, data)."""
