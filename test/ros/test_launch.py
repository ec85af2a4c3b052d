"""The launch file with the real launch system (skipped where launch_ros is not installed:
the PyPI route has no launch/launch_ros wheels)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

launch_ros = pytest.importorskip(
    "launch_ros", reason="launch_ros is not installed (ROS 2 from PyPI has no launch wheels); on a ROS 2 "
                         "install this test runs the launch file for real")

from .conftest import wait_for  # noqa: E402

LAUNCH_FILE = Path(sys.prefix) / "share" / "stark_ros" / "launch" / "tracker.launch.py"


def test_launch_file_starts_the_node_with_yaml_values(ros_context, untrained_lite_model, tmp_path):
    import rclpy
    from rcl_interfaces.srv import GetParameters

    assert LAUNCH_FILE.is_file()
    cmd = ["ros2", "launch", "stark_ros", "tracker.launch.py", f"model:={untrained_lite_model}",
           "namespace:=launched"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    node = rclpy.create_node("launch_probe")
    try:
        cli = node.create_client(GetParameters, "/launched/stark_tracker/get_parameters")
        assert cli.wait_for_service(timeout_sec=60)
        future = cli.call_async(GetParameters.Request(names=["frame_buffer_size", "model"]))
        wait_for(lambda: rclpy.spin_once(node, timeout_sec=0.1) or future.done(), 30, "parameters")
        values = future.result().values
        assert values[0].integer_value == 30
        assert values[1].string_value == str(untrained_lite_model)
    finally:
        node.destroy_node()
        proc.terminate()
        proc.wait(10)
        time.sleep(0.1)
