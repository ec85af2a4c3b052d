"""Launch the STARK tracker node.

    ros2 launch stark_ros tracker.launch.py [image:=/camera/image_raw] [model:=/path/to/model]
        [params_file:=my.yaml] [namespace:=tracker] [use_sim_time:=true] [log_level:=debug]
        [compressed:=true]

Everything else lives in the parameters file (default: the installed config/tracker.yaml).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _node(context, *args, **kwargs):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    compressed = value("compressed").lower() in ("true", "1", "yes")
    overrides = {"compressed": compressed, "use_sim_time": value("use_sim_time").lower() in ("true", "1", "yes")}
    if value("model"):
        overrides["model"] = value("model")
    image_topic = "image/compressed" if compressed else "image"
    remap_to = value("image") + ("/compressed" if compressed and not value("image").endswith("/compressed") else "")
    return [Node(
        package="stark_ros",
        executable="tracker_node",
        name="stark_tracker",
        namespace=value("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[value("params_file"), overrides],
        remappings=[(image_topic, remap_to)],
        arguments=["--ros-args", "--log-level", value("log_level")],
    )]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("stark_ros"), "config", "tracker.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML file with the node's parameters"),
        DeclareLaunchArgument("model", default_value="",
                              description="model folder (template.onnx + track.onnx); empty: the default model"),
        DeclareLaunchArgument("image", default_value="image", description="image topic to track on"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        DeclareLaunchArgument("compressed", default_value="false",
                              description="subscribe to sensor_msgs/CompressedImage on <image>/compressed"),
        OpaqueFunction(function=_node),
    ])
