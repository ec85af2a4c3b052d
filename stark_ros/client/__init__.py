"""Talking to a running tracker node from outside it: the installed node as a child process
(:mod:`stark_ros.client.process`) and one client that publishes frames and requests and collects
tracks and events (:mod:`stark_ros.client.harness`). Used by the demo, bag replay, the node
benchmarks and the ROS tests; it imports rclpy and :mod:`stark_ros.interface`, never the node's
internals (``stark_ros.node``). The process module needs no rclpy.
"""
