"""stark_ros: the STARK transformer tracker for ROS 2.

Layers (imports point down only): node -> runtime -> core; export -> model -> core.
The ``core`` and ``runtime`` packages never import torch or rclpy.
"""

__version__ = "0.1.0"
