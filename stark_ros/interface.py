"""The tracker node's ROS interface, the one definition its node and its clients share: topic and
service names (relative to the node's namespace), the QoS of each, and the conversions between the
package's boxes and frames and the messages on those topics.

Importable by the node (``stark_ros.node``) and by everything that talks to it (``stark_ros.client``,
the demo, bag replay, the benchmarks, the ROS tests); it needs rclpy and the generated messages, and
nothing of the runtime.
"""

from __future__ import annotations

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from stark_ros.core.boxes import box_to_msg_values
from stark_ros.core.images import ImageConverter
from stark_ros.core.stamps import set_stamp
from stark_ros.msg import BoundingBox2D

# The node's name unless remapped (``-r __node:=...``).
DEFAULT_NODE_NAME = "stark_tracker"
IMAGE_TOPIC = "image"
# image_transport's convention: the compressed stream is the base topic (as remapped) + this.
COMPRESSED_SUFFIX = "/compressed"
COMPRESSED_IMAGE_TOPIC = IMAGE_TOPIC + COMPRESSED_SUFFIX
TARGET_TOPIC = "target"
TRACKS_TOPIC = "tracks"
EVENTS_TOPIC = "events"
DETECTIONS_TOPIC = "detections"
DEBUG_IMAGE_TOPIC = "debug_image"
OVERLAY_TOPIC = "overlay"
DIAGNOSTICS_TOPIC = "/diagnostics"
START_TRACKING_SERVICE = "start_tracking"
CANCEL_TRACKING_SERVICE = "cancel_tracking"
LIST_TARGETS_SERVICE = "list_targets"
# The node's status on /diagnostics is named "<node name>: STARK tracker".
DIAGNOSTICS_STATUS = "STARK tracker"
DEFAULT_FRAME_ID = "camera"
DEFAULT_ENCODING = "bgr8"

# Frames (README "Image QoS", measured with `python -m stark_ros.bench image_qos`): reliability
# best_available. A subscription takes reliable where every image publisher is reliable (rclpy's
# default, `ros2 bag play` of such a recording): raw 640x480 / 1280x720 rgb8 frames from a publisher
# on Fast DDS's defaults then arrive whole (90 and 85 of 90 at 30 Hz), where best effort got 0 to 6
# of 90: a frame above the 512 KB shared-memory segment goes over UDP in fragments, and best
# effort drops the frame when one fragment is lost. A best-effort publisher (a sensor-data camera
# driver) gets best effort: a reliable subscription would receive nothing from it (the node switches
# when one appears later). Publishers (clients, debug_image) resolve it to reliable, which every
# subscription accepts. Depth 5: at 1280x720 a reliable depth of 1 got 45/90 (a frame not yet taken
# is replaced by the next), 5 got 85/90; the node keeps only the newest frames for its worker anyway.
IMAGE_QUEUE_DEPTH = 5
IMAGE_QOS = QoSProfile(depth=IMAGE_QUEUE_DEPTH, history=HistoryPolicy.KEEP_LAST,
                       reliability=ReliabilityPolicy.BEST_AVAILABLE)
# DDS keeps this many target requests until the callback takes them: a planner's burst must not be
# overwritten in the reader's history before the node could answer it (1000 requests in 0.9 s lost
# 809 with a depth of 20). What the node cannot take on is answered busy.
REQUEST_QUEUE_DEPTH = 1000
# Every request gets one answer on events: a burst of answers must not overwrite each other in a
# reader's history before its executor takes them.
EVENTS_QUEUE_DEPTH = 1000
# Tracks are reliable and deep enough that a consumer whose executor pauses for a few seconds at
# camera rate (a replay at several times real time, a loaded machine) loses none.
TRACKS_QUEUE_DEPTH = 100
DIAGNOSTICS_QUEUE_DEPTH = 10
# Service calls (requests on the node's side, responses on the caller's) DDS keeps until they are
# taken: with rclpy's default of 10, 37 of 50 concurrent calls never reached the node and their
# callers hung. The node answers what it cannot take on "busy" (max_pending_requests); callers
# need as deep a queue for their responses (TrackerClient uses SERVICE_QOS).
SERVICE_QUEUE_DEPTH = 1000
REQUEST_QOS = QoSProfile(depth=REQUEST_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
EVENTS_QOS = QoSProfile(depth=EVENTS_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
TRACKS_QOS = QoSProfile(depth=TRACKS_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_QOS = QoSProfile(depth=DIAGNOSTICS_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
# The overlay is a drawing: a viewer wants the latest one, not a backlog.
OVERLAY_QUEUE_DEPTH = 10
OVERLAY_QOS = QoSProfile(depth=OVERLAY_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)


def service_qos(depth: int = SERVICE_QUEUE_DEPTH) -> QoSProfile:
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


SERVICE_QOS = service_qos()


def image_topic(compressed: bool) -> str:
    return COMPRESSED_IMAGE_TOPIC if compressed else IMAGE_TOPIC


def box_to_msg(box) -> BoundingBox2D:
    """(x, y, w, h) top-left + size -> the message's centre + size (the reverse, ROS-free, is
    :func:`stark_ros.core.boxes.msg_to_box`)."""
    msg = BoundingBox2D()
    msg.center.position.x, msg.center.position.y, msg.size_x, msg.size_y = box_to_msg_values(box)
    return msg


def image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = DEFAULT_FRAME_ID,
              encoding: str = DEFAULT_ENCODING) -> Image:
    """An RGB frame as a ``sensor_msgs/Image`` in ``encoding``, stamped."""
    msg = Image(**ImageConverter.rgb_to_fields(rgb, encoding))
    set_stamp(msg.header, stamp_ns)
    msg.header.frame_id = frame_id
    return msg


def compressed_image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str = DEFAULT_FRAME_ID) -> CompressedImage:
    """An RGB frame as a JPEG ``sensor_msgs/CompressedImage``, stamped."""
    msg = CompressedImage(format="jpeg", data=ImageConverter.rgb_to_jpeg(rgb))
    set_stamp(msg.header, stamp_ns)
    msg.header.frame_id = frame_id
    return msg
