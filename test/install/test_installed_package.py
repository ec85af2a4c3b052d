"""The built and installed package, the way ROS finds it: the ament index knows stark_ros, its
share folder has the launch file, config and package.xml, the executable sits where `ros2 run`
looks, the interfaces import from the same package as the Python code and cross real DDS."""

import os
import re
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run the tests through `make test`)")
from ament_index_python.packages import get_package_prefix, get_package_share_directory  # noqa: E402

import stark_ros  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_ament_index_and_share_folder():
    share = Path(get_package_share_directory("stark_ros"))
    assert (share / "launch" / "tracker.launch.py").is_file()
    assert (share / "config" / "tracker.yaml").is_file()
    assert (share / "package.xml").is_file()
    assert (share / "msg" / "TrackedObjectArray.msg").is_file()
    assert (share / "srv" / "StartTracking.srv").is_file()


def test_executable_where_ros2_run_looks():
    exe = Path(get_package_prefix("stark_ros")) / "lib" / "stark_ros" / "tracker_node"
    assert exe.is_file() and os.access(exe, os.X_OK)


def test_one_version_everywhere():
    xml = (Path(get_package_share_directory("stark_ros")) / "package.xml").read_text()
    assert re.search(r"<version>([^<]+)</version>", xml).group(1) == stark_ros.__version__
    source_xml = (REPO / "package.xml").read_text()
    assert re.search(r"<version>([^<]+)</version>", source_xml).group(1) == stark_ros.__version__


def test_python_code_and_generated_interfaces_share_one_package():
    from stark_ros.msg import TrackedObjectArray

    from stark_ros.runtime import StarkRuntime

    pkg = Path(stark_ros.__file__).parent
    assert Path(sys.modules[TrackedObjectArray.__module__].__file__).parent.parent == pkg
    assert Path(sys.modules[StarkRuntime.__module__].__file__).parents[1] == pkg


def test_interfaces_round_trip_over_dds():
    from stark_ros.msg import TrackedObject, TrackedObjectArray

    rclpy.init()
    try:
        node = rclpy.create_node("install_round_trip")
        got = []
        node.create_subscription(TrackedObjectArray, "install_check", got.append, 10)
        pub = node.create_publisher(TrackedObjectArray, "install_check", 10)
        msg = TrackedObjectArray()
        msg.header.frame_id = "camera"
        obj = TrackedObject(id="7", label="person", score=0.75, state=TrackedObject.STATE_LOST)
        obj.bbox.center.position.x, obj.bbox.size_x = 12.5, 30.0
        msg.objects.append(obj)
        end = time.monotonic() + 20
        while not got and time.monotonic() < end:
            pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.1)
        assert got, "no message came back over DDS"
        back = got[0].objects[0]
        assert (back.id, back.label, back.state, back.bbox.size_x) == ("7", "person", TrackedObject.STATE_LOST, 30.0)
        assert back.score == pytest.approx(0.75)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
