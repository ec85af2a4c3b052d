"""The node's tracks as ``vision_msgs/Detection2DArray`` on ``detections``: the standard message that
RViz and Foxglove panels and other detection consumers read.

vision_msgs ships with every ROS 2 distribution but has no PyPI wheel, so it is optional: where it
does not import, the node publishes only its own messages and says so once at start-up.

One ``Detection2D`` per target in the frame, LOST ones included (as on ``tracks``: their score is
below the lost threshold and their box is the last confident one):

- ``header``: the image's header (as the array's);
- ``id``: the track id;
- ``bbox``: the box, centre + size in pixels (the layouts are the same);
- ``results[0].hypothesis``: ``class_id`` = the target request's label, ``score`` = the track score
  (NaN for models without a score head). ``results[0].pose`` stays at its default: the tracker
  knows no 3-D pose.
"""

from __future__ import annotations

from stark_ros.interface import DETECTIONS_TOPIC
from stark_ros.msg import TrackedObjectArray

try:
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
except ImportError:  # no vision_msgs in this ROS 2 environment (e.g. ROS 2 from PyPI)
    Detection2D = Detection2DArray = ObjectHypothesisWithPose = None

VISION_MSGS_AVAILABLE = Detection2DArray is not None


def to_detection_array(tracks: TrackedObjectArray):
    """One frame's tracks -> ``vision_msgs/Detection2DArray`` (needs vision_msgs)."""
    out = Detection2DArray(header=tracks.header)
    for obj in tracks.objects:
        det = Detection2D(header=tracks.header, id=obj.id)
        # float(): rclpy stores a Python int in a float64 field wrongly, so never pass one through.
        det.bbox.center.position.x = float(obj.bbox.center.position.x)
        det.bbox.center.position.y = float(obj.bbox.center.position.y)
        det.bbox.center.theta = float(obj.bbox.center.theta)
        det.bbox.size_x = float(obj.bbox.size_x)
        det.bbox.size_y = float(obj.bbox.size_y)
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = obj.label
        hypothesis.hypothesis.score = float(obj.score)
        det.results.append(hypothesis)
        out.detections.append(det)
    return out


class DetectionsOutput:
    """The ``detections`` publisher of a node, or nothing (switched off, or no vision_msgs)."""

    def __init__(self, node, enabled: bool, qos, **publisher_options):
        self._pub = None
        if not enabled:
            node.get_logger().info("vision_msgs output switched off (publish_detections: false)")
        elif not VISION_MSGS_AVAILABLE:
            node.get_logger().info(f"vision_msgs is not installed: not publishing vision_msgs/Detection2DArray on "
                                   f"'{DETECTIONS_TOPIC}' (install ros-$ROS_DISTRO-vision-msgs for it)")
        else:
            self._pub = node.create_publisher(Detection2DArray, DETECTIONS_TOPIC, qos, **publisher_options)

    @property
    def active(self) -> bool:
        return self._pub is not None

    @property
    def publishers(self) -> list:
        """What the node destroys with its other publishers at cleanup."""
        return [self._pub] if self._pub is not None else []

    def publish(self, tracks: TrackedObjectArray) -> None:
        if self._pub is not None:
            self._pub.publish(to_detection_array(tracks))
