"""stark_ros: the STARK transformer tracker for ROS 2.

Layers (imports point down only): node -> runtime -> tracking -> core; export -> model -> tracking -> core.
The ``core``, ``tracking`` and ``runtime`` packages never import torch or rclpy (docs/architecture.md).
"""

__version__ = "0.1.0"
