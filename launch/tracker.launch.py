"""Launch the STARK tracker node.

    ros2 launch stark_ros tracker.launch.py [image:=/camera/image_raw] [model:=/path/to/model]
        [params_file:=my.yaml] [namespace:=tracker] [use_sim_time:=true] [log_level:=debug]
        [image_transport:=compressed] [transport_profile:=/path/to/fastdds.xml|none]

Everything else lives in the parameters file (default: the installed config/tracker.yaml).
The node and its topics live in the namespace `tracker` (/tracker/tracks, /tracker/start_tracking,
...) unless `namespace:=other` (`namespace:=/` puts them at the root); `image` is the camera topic
(default /image, absolute: outside the namespace).
`image_transport:=compressed` subscribes to `<image>/compressed`, image_transport's convention.
`log_level` sets the node's own logger (not every rcl/rmw logger: debug there floods the console).
`transport_profile` (the Fast DDS XML profile the node runs with, as FASTDDS_DEFAULT_PROFILES_FILE):
  default: the installed config/fastdds_large_images.xml (a 32 MB shared-memory segment), unless
           FASTDDS_DEFAULT_PROFILES_FILE is already set: a profile set for the whole shell is the
           user's choice for every node, this default is only ours;
  a path:  that file, also over a set FASTDDS_DEFAULT_PROFILES_FILE: it was typed for this launch;
  none:    Fast DDS's defaults, whatever FASTDDS_DEFAULT_PROFILES_FILE says (`ros2 launch` refuses
           an empty `transport_profile:=`; an empty value from an including launch file means none too).
The profile matters to the side that publishes (it owns the shared-memory segment): give the camera
driver the same one for raw frames through shared memory; the node's default image QoS (reliable)
receives them without it (README "Image QoS").
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
NODE_NAME = "stark_tracker"
DEFAULT_NAMESPACE = "tracker"
DEFAULT_IMAGE_TOPIC = "/image"
# transport_profile's words (anything else is a path).
PROFILE_DEFAULT = "default"
PROFILE_NONE = "none"
IMAGE_TRANSPORTS = ("raw", "compressed")
TRUE_WORDS = ("true", "1", "yes")


def node_logger_name(namespace: str, name: str = NODE_NAME) -> str:
    """The logger rclpy gives a node: its namespace and name joined with dots."""
    return ".".join([*(part for part in namespace.split("/") if part), name])


def profile_environment(choice: str, installed_profile: str, environ) -> dict:
    """The node's whole environment for a transport_profile value (module docstring). Built whole
    because `none` must remove a set FASTDDS_DEFAULT_PROFILES_FILE: Fast DDS reads an empty one as a
    file name and logs an XML parser error."""
    env = dict(environ)
    choice = choice.strip()
    if choice == PROFILE_DEFAULT:
        if not env.get(PROFILE_ENV):
            env[PROFILE_ENV] = installed_profile
    elif choice in ("", PROFILE_NONE):
        env.pop(PROFILE_ENV, None)
    else:
        env[PROFILE_ENV] = choice
    return env


def _node(context, *args, **kwargs):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    transport = value("image_transport").strip().lower()
    if transport not in IMAGE_TRANSPORTS:
        raise RuntimeError(f"image_transport:={transport!r}: expected one of {', '.join(IMAGE_TRANSPORTS)}")
    overrides = {"image_transport": transport, "use_sim_time": value("use_sim_time").lower() in TRUE_WORDS}
    if value("model"):
        overrides["model"] = value("model")
    namespace = value("namespace").strip("/")
    installed_profile = os.path.join(get_package_share_directory("stark_ros"), "config", "fastdds_large_images.xml")
    return [Node(
        package="stark_ros",
        executable="tracker_node",
        name=NODE_NAME,
        namespace=namespace,
        output="screen",
        emulate_tty=True,
        parameters=[value("params_file"), overrides],
        # Only the base topic is remapped: the node derives <image>/compressed from it.
        remappings=[("image", value("image"))],
        arguments=["--ros-args", "--log-level", f"{node_logger_name(namespace)}:={value('log_level')}"],
        env=profile_environment(value("transport_profile"), installed_profile,
                                # The launch's environment (SetEnvironmentVariable included) where launch has one.
                                getattr(context, "environment", os.environ)),
    )]


def generate_launch_description():
    share = get_package_share_directory("stark_ros")
    default_params = os.path.join(share, "config", "tracker.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML file with the node's parameters"),
        DeclareLaunchArgument("model", default_value="",
                              description="model folder (template.onnx + track.onnx); empty: the default model"),
        DeclareLaunchArgument("image", default_value=DEFAULT_IMAGE_TOPIC,
                              description="camera image topic to track on (relative names are in the namespace)"),
        DeclareLaunchArgument("namespace", default_value=DEFAULT_NAMESPACE,
                              description="namespace of the node and its topics; / for the root"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="the node's log level: debug, info, warn, error"),
        DeclareLaunchArgument("transport_profile", default_value=PROFILE_DEFAULT,
                              description="Fast DDS XML profile for the node: default (the installed large-image "
                                          "profile unless FASTDDS_DEFAULT_PROFILES_FILE is set), a path (wins over "
                                          "FASTDDS_DEFAULT_PROFILES_FILE), or none (Fast DDS defaults)"),
        DeclareLaunchArgument("image_transport", default_value="raw", choices=list(IMAGE_TRANSPORTS),
                              description="raw: sensor_msgs/Image on <image>; compressed: sensor_msgs/CompressedImage "
                                          "on <image>/compressed"),
        OpaqueFunction(function=_node),
    ])
