"""What a ROS user expects of the installed node, over real DDS: the overlay a viewer draws over the
camera image, image_transport's topic convention, the image QoS that adapts to the camera's, QoS
overrides on every topic, a lifecycle shutdown that removes the node's interface, and REJECTED
reasons that tell a frame that never arrived from one older than the buffer."""

import time

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from stark_ros.msg import TrackedObject, TrackEvent
from stark_ros.srv import CancelTracking

from stark_ros.client.harness import TrackerClient
from stark_ros.client.process import DISCOVERY_SETTLE_S, TrackerNodeProcess
from stark_ros.core.boxes import msg_to_box
from stark_ros.core.stamps import NS_PER_S
from stark_ros.interface import (
    COMPRESSED_SUFFIX,
    IMAGE_TOPIC,
    OVERLAY_TOPIC,
    START_TRACKING_SERVICE,
    TARGET_TOPIC,
    TRACKS_TOPIC,
    compressed_image_msg,
    image_msg,
)
from stark_ros.node.frame_buffer import Lookup
from stark_ros.node.overlay import COLOURS

from .conftest import start_tracker, wait_for

SEQUENCE = "vot2014_car"
FIRST_STAMP_NS = 1000 * NS_PER_S
PERIOD_NS = NS_PER_S // 10
WAIT_S = 60.0
SIDES_PER_BOX = 4
POINTS_PER_SIDE = 2


def stamp(i: int) -> int:
    return FIRST_STAMP_NS + i * PERIOD_NS


def _overlays(client) -> list:
    from visualization_msgs.msg import ImageMarker

    received = client.listen(ImageMarker, OVERLAY_TOPIC)
    topic = f"{client.node.get_namespace()}/{OVERLAY_TOPIC}"
    wait_for(lambda: client.node.count_publishers(topic) > 0, WAIT_S, "the overlay publisher")
    time.sleep(DISCOVERY_SETTLE_S)  # the graph shows the publisher before the new reader has matched it
    return received


def _corners(marker) -> list[tuple[float, float, float, float]]:
    """Each box of a LINE_LIST marker as (left, top, right, bottom)."""
    pts = np.array([(p.x, p.y) for p in marker.points]).reshape(-1, SIDES_PER_BOX * POINTS_PER_SIDE, 2)
    return [(b[:, 0].min(), b[:, 1].min(), b[:, 0].max(), b[:, 1].max()) for b in pts]


def test_overlay_draws_every_box_with_the_images_header_and_clears_once(tracker, sequence):
    from visualization_msgs.msg import ImageMarker

    _, client = tracker("overlay")
    markers = _overlays(client)
    for i in range(2):
        client.publish_and_wait(client.image_msg(sequence.frame(i), stamp(i)))
    assert not markers, "no overlay while nothing is tracked"
    client.request(sequence.boxes[1], stamp(1), target_id="a")
    client.request(sequence.boxes[1] + np.array([20.0, 10.0, 0.0, 0.0]), stamp(1), target_id="b")
    for tid in "ab":
        client.wait_event(lambda e, tid=tid: e.id == tid and e.type == TrackEvent.INITIALIZED, what=f"start {tid}")
    tracked = [client.publish_and_wait(client.image_msg(sequence.frame(i), stamp(i))) for i in range(2, 5)]
    wait_for(lambda: len(markers) >= len(tracked), WAIT_S, "an overlay per tracked frame")
    by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in markers}
    for tracks in tracked:
        marker = by_stamp[(tracks.header.stamp.sec, tracks.header.stamp.nanosec)]
        assert marker.header == tracks.header
        assert marker.type == ImageMarker.LINE_LIST and marker.action == ImageMarker.ADD and marker.scale > 0
        assert len(marker.points) == len(tracks.objects) * SIDES_PER_BOX * POINTS_PER_SIDE
        assert len(marker.outline_colors) == len(marker.points)
        for (left, top, right, bottom), obj in zip(_corners(marker), tracks.objects, strict=True):
            x, y, w, h = msg_to_box(obj.bbox)
            np.testing.assert_allclose((left, top, right - left, bottom - top), (x, y, w, h), atol=1e-6)
        expected = [COLOURS[o.state] for o in tracks.objects for _ in range(SIDES_PER_BOX * POINTS_PER_SIDE)]
        assert marker.outline_colors == expected
        assert all(o.state == TrackedObject.STATE_TRACKING for o in tracks.objects)

    # Cancelled: one empty marker clears the drawing, then nothing more.
    assert client.call(CancelTracking, "cancel_tracking", CancelTracking.Request(id="")).success
    count = len(markers)
    for i in range(5, 8):
        client.publish_and_wait(client.image_msg(sequence.frame(i), stamp(i)))
    wait_for(lambda: len(markers) > count, WAIT_S, "the clearing overlay")
    time.sleep(DISCOVERY_SETTLE_S)
    assert len(markers) == count + 1 and not markers[-1].points


def test_compressed_input_follows_the_remapped_image_topic(ros_context, tmp_path, untrained_lite_model, sequence):
    """image_transport's convention: `-r image:=/conv_cam/image` + image_transport compressed reads
    /conv_cam/image/compressed (not <namespace>/image/compressed)."""
    import rclpy

    name, camera = "remapped", "/conv_cam/image"
    proc = TrackerNodeProcess(tmp_path / f"{name}.log", params={"model": str(untrained_lite_model),
                                                                "image_transport": "compressed",
                                                                "intra_op_threads": 1},
                              namespace=name, node_name=name)
    proc.args += ["-r", f"{IMAGE_TOPIC}:={camera}"]
    proc.start()
    node = rclpy.create_node("remap_camera", context=ros_context)
    camera_pub = node.create_publisher(CompressedImage, camera + COMPRESSED_SUFFIX, 5)
    try:
        with TrackerClient(name, context=ros_context, name="remap_client") as client:
            proc.wait_for_subscribers(camera_pub, client.target_pub)
            ours = [e for e in node.get_subscriptions_info_by_topic(camera + COMPRESSED_SUFFIX) if e.node_name == name]
            assert ours and ours[0].topic_type == "sensor_msgs/msg/CompressedImage"
            assert node.count_subscribers(f"/{name}/{IMAGE_TOPIC}{COMPRESSED_SUFFIX}") == 0
            assert node.count_subscribers(camera) == 0
            msg = compressed_image_msg(sequence.frame(0), stamp(0))
            camera_pub.publish(msg)
            wait_for(lambda: client.tracks_for(stamp(0)) or camera_pub.publish(msg), WAIT_S, "tracks of the frame")
            assert f"active: tracking on '{camera}{COMPRESSED_SUFFIX}'" in proc.log_text()
    finally:
        node.destroy_node()
        proc.stop()


def test_image_qos_turns_best_effort_for_a_best_effort_camera(ros_context, tmp_path, untrained_lite_model, sequence):
    """The subscription starts reliable (no publisher yet); a sensor-data camera that appears later
    gets its frames through after the node switches, and the node says why."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data

    name = "qos_switch"
    proc = start_tracker(tmp_path, name, model=str(untrained_lite_model), intra_op_threads=1)
    node = rclpy.create_node("sensor_camera", context=ros_context)
    try:
        with TrackerClient(name, context=ros_context, name="qos_client") as client:
            client.wait_connected(proc)
            assert "(reliable)" in proc.log_text()
            camera_pub = node.create_publisher(Image, f"/{name}/{IMAGE_TOPIC}", qos_profile_sensor_data)
            msg = image_msg(sequence.frame(0), stamp(0))
            # Resent until it arrives: the first ones meet the old reliable subscription.
            wait_for(lambda: client.tracks_for(stamp(0)) or camera_pub.publish(msg), WAIT_S,
                     "tracks of a frame from the best-effort camera", poll=0.5)
            assert "a best-effort publisher appeared" in proc.log_text()
    finally:
        node.destroy_node()
        proc.stop()


def test_every_topic_has_qos_overrides(tracker):
    from rcl_interfaces.srv import ListParameters

    _proc, client = tracker("overrides")
    listed = client.call(ListParameters, "/overrides/overrides/list_parameters",
                         ListParameters.Request(prefixes=["qos_overrides"], depth=0))
    names = set(listed.result.names)
    ns = "/overrides"
    for topic, kind in ((f"{ns}/{IMAGE_TOPIC}", "subscription"), (f"{ns}/{TARGET_TOPIC}", "subscription"),
                        (f"{ns}/{TRACKS_TOPIC}", "publisher"), (f"{ns}/events", "publisher"),
                        (f"{ns}/{OVERLAY_TOPIC}", "publisher"), (f"{ns}/debug_image", "publisher"),
                        ("/diagnostics", "publisher")):
        for policy in ("reliability", "depth", "history"):
            assert f"qos_overrides.{topic}.{kind}.{policy}" in names, (topic, kind, policy)


def test_lifecycle_shutdown_from_active_removes_the_interface(tracker, sequence):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    proc, client = tracker("shutdown")
    client.publish_and_wait(client.image_msg(sequence.frame(0), stamp(0)))
    answer = client.call(ChangeState, "/shutdown/shutdown/change_state",
                         ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVE_SHUTDOWN)))
    assert answer.success
    node = client.node
    def gone():
        return (node.count_subscribers(f"/shutdown/{IMAGE_TOPIC}") == 0
                and node.count_subscribers(f"/shutdown/{TARGET_TOPIC}") == 0
                and node.count_publishers(f"/shutdown/{TRACKS_TOPIC}") == 0
                and not any(n == f"/shutdown/{START_TRACKING_SERVICE}" for n, _ in node.get_service_names_and_types()))
    wait_for(gone, WAIT_S, "the node's subscriptions, publishers and services to go")
    assert "shut down: subscriptions, publishers and services removed" in proc.log_text()
    assert proc.proc.poll() is None, "a finalized lifecycle node stays up until it is stopped"


def test_rejected_never_received_vs_older_than_the_buffer(tracker, sequence):
    """Frame 2 is never sent; with a buffer of 2 frames, a request on it is 'never received' and one
    on frame 1 (received, gone) 'older than the buffer'."""
    _, client = tracker("stamps", frame_buffer_size=2)
    for i in (0, 1, 3, 4, 5):
        client.publish_and_wait(client.image_msg(sequence.frame(i), stamp(i)))
    box = sequence.boxes[0]
    client.request(box, stamp(2), target_id="lost")
    client.request(box, stamp(1), target_id="gone")
    lost = client.wait_event(lambda e: e.id == "lost", what="the answer on the frame never received")
    gone = client.wait_event(lambda e: e.id == "gone", what="the answer on the frame received")
    assert lost.type == gone.type == TrackEvent.REJECTED
    assert lost.reason == Lookup.NEVER_RECEIVED.value
    assert gone.reason == Lookup.OLDER_THAN_BUFFER.value


@pytest.fixture(scope="module")
def sequence(shared):
    from stark_ros.datasets import load_simple_sequence

    return load_simple_sequence(shared / "data" / "sot" / SEQUENCE)
