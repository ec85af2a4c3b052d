"""The tracker node's ROS interface, the one definition its node and its clients share: topic and
service names (relative to the node's namespace), the QoS of each, and the conversions between the
package's boxes and frames and the messages on those topics.

Importable by the node (``stark_ros.node``) and by everything that talks to it (``stark_ros.client``,
the demo, bag replay, the benchmarks, the ROS tests); it needs rclpy and the generated messages, and
nothing of the runtime.
"""

from __future__ import annotations

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from stark_ros.core.boxes import box_to_msg_values
from stark_ros.core.images import ImageConverter
from stark_ros.core.stamps import set_stamp
from stark_ros.msg import BoundingBox2D

# The node's name unless remapped (``-r __node:=...``).
DEFAULT_NODE_NAME = "stark_tracker"
IMAGE_TOPIC = "image"
COMPRESSED_IMAGE_TOPIC = "image/compressed"
TARGET_TOPIC = "target"
TRACKS_TOPIC = "tracks"
EVENTS_TOPIC = "events"
DETECTIONS_TOPIC = "detections"
DEBUG_IMAGE_TOPIC = "debug_image"
DIAGNOSTICS_TOPIC = "/diagnostics"
START_TRACKING_SERVICE = "start_tracking"
CANCEL_TRACKING_SERVICE = "cancel_tracking"
LIST_TARGETS_SERVICE = "list_targets"
# The node's status on /diagnostics is named "<node name>: STARK tracker".
DIAGNOSTICS_STATUS = "STARK tracker"
DEFAULT_FRAME_ID = "camera"
DEFAULT_ENCODING = "bgr8"

# Frames: best effort, shallow (a late frame is worth less than the next one).
IMAGE_QOS = qos_profile_sensor_data
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
REQUEST_QOS = QoSProfile(depth=REQUEST_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
EVENTS_QOS = QoSProfile(depth=EVENTS_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
TRACKS_QOS = QoSProfile(depth=TRACKS_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_QOS = QoSProfile(depth=DIAGNOSTICS_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)


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
