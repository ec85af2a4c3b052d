"""Launch the STARK tracker node.

    ros2 launch stark_ros tracker.launch.py [image:=/camera/image_raw] [model:=/path/to/model]
        [params_file:=my.yaml] [namespace:=tracker] [use_sim_time:=true] [log_level:=debug]
        [compressed:=true] [transport_profile:=/path/to/fastdds.xml]

Everything else lives in the parameters file (default: the installed config/tracker.yaml).
`log_level` sets the node's own logger (not every rcl/rmw logger: debug there floods the console).
`transport_profile` (default: the installed config/fastdds_large_images.xml, a 32 MB shared-memory
segment; empty: Fast DDS defaults) is given to the node as FASTDDS_DEFAULT_PROFILES_FILE unless that
is already set; give the camera driver the same profile, since the publishing side owns the segment.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
NODE_NAME = "stark_tracker"


def node_logger_name(namespace: str, name: str = NODE_NAME) -> str:
    """The logger rclpy gives a node: its namespace and name joined with dots."""
    return ".".join([*(part for part in namespace.split("/") if part), name])


def _node(context, *args, **kwargs):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    compressed = value("compressed").lower() in ("true", "1", "yes")
    overrides = {"compressed": compressed, "use_sim_time": value("use_sim_time").lower() in ("true", "1", "yes")}
    if value("model"):
        overrides["model"] = value("model")
    if value("precision"):
        overrides["precision"] = value("precision")
    image_topic = "image/compressed" if compressed else "image"
    remap_to = value("image") + ("/compressed" if compressed and not value("image").endswith("/compressed") else "")
    env = {}
    if value("transport_profile") and PROFILE_ENV not in os.environ:
        env[PROFILE_ENV] = value("transport_profile")
    return [Node(
        package="stark_ros",
        executable="tracker_node",
        name=NODE_NAME,
        namespace=value("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[value("params_file"), overrides],
        remappings=[(image_topic, remap_to)],
        arguments=["--ros-args", "--log-level", f"{node_logger_name(value('namespace'))}:={value('log_level')}"],
        additional_env=env,
    )]


def generate_launch_description():
    share = get_package_share_directory("stark_ros")
    default_params = os.path.join(share, "config", "tracker.yaml")
    default_profile = os.path.join(share, "config", "fastdds_large_images.xml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML file with the node's parameters"),
        DeclareLaunchArgument("model", default_value="",
                              description="model folder (template.onnx + track.onnx); empty: the default model"),
        DeclareLaunchArgument("precision", default_value="",
                              description="network arithmetic on a GPU: fp32 (exact), tf32 or fp16; empty: the "
                                          "params file's (fp32)"),
        DeclareLaunchArgument("image", default_value="image", description="image topic to track on"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="the node's log level: debug, info, warn, error"),
        DeclareLaunchArgument("transport_profile", default_value=default_profile,
                              description="Fast DDS XML profile for the node (large raw images); empty: defaults"),
        DeclareLaunchArgument("compressed", default_value="false",
                              description="subscribe to sensor_msgs/CompressedImage on <image>/compressed"),
        OpaqueFunction(function=_node),
    ])
