"""The node's tracks drawn over the camera image by a viewer: ``visualization_msgs/ImageMarker`` on
``overlay``.

Foxglove's Image panel draws ImageMarker messages over the image it shows: pick
the camera topic as the image and the node's ``overlay`` as an annotation topic. RViz has no image
overlay display; ``debug_image`` (boxes burnt into a copy of the frame, computed only while someone
subscribes) is for it and for rqt_image_view.

One marker per frame that has targets: a ``LINE_LIST`` of each box's four sides, green while
TRACKING and red while LOST (the colours of ``debug_image``), the line ``scale`` pixels wide, with
the image's header so that a viewer synchronising annotations to images pairs them exactly. Only
one marker, because a viewer keeps one annotation per topic (the latest, or the one stamped like
the image): every box must be in it. An ImageMarker has no text, so ids and scores are not drawn
(``debug_image`` writes them). When the last target goes, one empty marker clears the drawing;
frames without targets publish nothing more.
"""

from __future__ import annotations

from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import ImageMarker

from stark_ros.interface import OVERLAY_QOS, OVERLAY_TOPIC
from stark_ros.msg import TrackedObject, TrackedObjectArray
from stark_ros.node.messages import DEBUG_COLOURS, STATE_TO_MSG

OVERLAY_NAMESPACE = "stark_tracker"
LINE_WIDTH_PX = 2.0
MAX_CHANNEL = 255.0
# debug_image's colours (8-bit RGB) as ColorRGBA, by the message's state.
COLOURS = {STATE_TO_MSG[state]: ColorRGBA(r=r / MAX_CHANNEL, g=g / MAX_CHANNEL, b=b / MAX_CHANNEL, a=1.0)
           for state, (r, g, b) in DEBUG_COLOURS.items()}


def box_sides(obj: TrackedObject) -> list[Point]:
    """The four sides of a target's box as a line list (two points per side), in pixels."""
    cx, cy = obj.bbox.center.position.x, obj.bbox.center.position.y
    half_w, half_h = obj.bbox.size_x / 2.0, obj.bbox.size_y / 2.0
    left, right, top, bottom = cx - half_w, cx + half_w, cy - half_h, cy + half_h
    corners = [(left, top), (right, top), (right, bottom), (left, bottom)]
    points = []
    for i, start in enumerate(corners):
        for x, y in (start, corners[(i + 1) % len(corners)]):
            points.append(Point(x=float(x), y=float(y), z=0.0))
    return points


def overlay_marker(tracks: TrackedObjectArray) -> ImageMarker:
    """One frame's targets as one ImageMarker (no points: nothing drawn)."""
    marker = ImageMarker(header=tracks.header, ns=OVERLAY_NAMESPACE, id=0, type=ImageMarker.LINE_LIST,
                         action=ImageMarker.ADD, scale=LINE_WIDTH_PX)
    for obj in tracks.objects:
        sides = box_sides(obj)
        marker.points.extend(sides)
        # One colour per point: viewers read either one per point or one per line, and take the
        # first point's colour for a line either way.
        marker.outline_colors.extend([COLOURS[obj.state]] * len(sides))
    return marker


class OverlayOutput:
    """The ``overlay`` publisher: a marker on frames with targets, one empty marker when they end."""

    def __init__(self, node, **publisher_options):
        self._pub = node.create_publisher(ImageMarker, OVERLAY_TOPIC, OVERLAY_QOS, **publisher_options)
        self._drawn = False

    @property
    def publishers(self) -> list:
        """What the node destroys with its other publishers at cleanup."""
        return [self._pub]

    def publish(self, tracks: TrackedObjectArray) -> None:
        if tracks.objects or self._drawn:
            self._pub.publish(overlay_marker(tracks))
        self._drawn = bool(tracks.objects)
