"""The vision_msgs output, over real DDS from the installed node: ``detections``
(vision_msgs/Detection2DArray) carries the same targets, ids, scores and boxes as ``tracks``, with the
image's header. Where vision_msgs is not installed (ROS 2 from PyPI has no vision_msgs wheel) those
tests are skipped and the node is checked to run without the output and to say so; with it,
``publish_detections: false`` switches the output off."""

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run the tests through `make test`)")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from stark_ros.msg import TargetRequest, TrackedObjectArray  # noqa: E402

from stark_ros.datasets import load_simple_sequence  # noqa: E402
from stark_ros.node.detections import DETECTIONS_TOPIC, VISION_MSGS_AVAILABLE  # noqa: E402
from stark_ros.node.image_conversion import ImageConverter  # noqa: E402
from stark_ros.node.messages import box_to_msg  # noqa: E402
from stark_ros.node.process import TrackerNodeProcess  # noqa: E402

NO_VISION_MSGS = ("vision_msgs is not installed: it has no PyPI wheel, so the bare-machine environment lacks it "
                  "(every ROS 2 distribution ships it; build it from source to run this test)")
SEQUENCE = "vot2014_car"
FRAMES = 6
FIRST_STAMP_NS = 1_000_000_000
FRAME_PERIOD_NS = 100_000_000
TARGET_ID = "car"
LABEL = "vehicle"
WAIT_S = 60.0
POLL_S = 0.02
# A best-effort frame sent just after discovery can still be lost: resend until the node answers.
RESEND_S = 2.0
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def _wait(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class _Peer:
    """The test's rclpy node in the tracker's namespace, with its own context."""

    def __init__(self, namespace: str):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"peer_{namespace}", namespace=f"/{namespace}", context=self.context)
        self.image_pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.target_pub = self.node.create_publisher(TargetRequest, "target", RELIABLE)
        self.received = {"tracks": [], "detections": []}
        self._lock = threading.Lock()
        self.node.create_subscription(TrackedObjectArray, "tracks", self._keep("tracks"), RELIABLE)
        if VISION_MSGS_AVAILABLE:
            from vision_msgs.msg import Detection2DArray

            self.node.create_subscription(Detection2DArray, DETECTIONS_TOPIC, self._keep("detections"), RELIABLE)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _keep(self, kind):
        def callback(msg):
            with self._lock:
                self.received[kind].append(msg)
        return callback

    def by_stamp(self, kind: str) -> dict:
        with self._lock:
            return {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in self.received[kind]}

    def publishers_of(self, topic: str) -> int:
        return self.node.count_publishers(f"{self.node.get_namespace()}/{topic}")

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture()
def tracker(tmp_path, shared):
    """start(namespace, **params) -> (TrackerNodeProcess, _Peer) with the node up and matched."""
    started = []

    def start(namespace: str, **params):
        proc = TrackerNodeProcess(tmp_path / f"{namespace}.log", params={"intra_op_threads": 1, **params},
                                  namespace=namespace).start()
        peer = _Peer(namespace)
        started.append((proc, peer))
        proc.wait_for_subscribers(peer.image_pub, peer.target_pub)
        _wait(lambda: peer.publishers_of("tracks") > 0, WAIT_S, "the tracks publisher")
        return proc, peer

    yield start
    for proc, peer in started:
        peer.close()
        proc.stop()


def _image(rgb, stamp_ns: int) -> Image:
    msg = Image(**ImageConverter.rgb_to_fields(rgb, "rgb8"))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "camera"
    return msg


def _track_a_few_frames(peer: _Peer, shared) -> list:
    """Frame 0, the request stamped on it, then the next frames one at a time; the stamps sent."""
    seq = load_simple_sequence(shared / "data" / "sot" / SEQUENCE)
    stamps = []
    for i in range(FRAMES):
        stamp_ns = FIRST_STAMP_NS + i * FRAME_PERIOD_NS
        msg = _image(seq.frame(i), stamp_ns)
        key = divmod(stamp_ns, 1_000_000_000)
        stamps.append(key)
        deadline = time.monotonic() + WAIT_S
        while key not in peer.by_stamp("tracks"):
            assert time.monotonic() < deadline, f"no tracks for frame {i}"
            peer.image_pub.publish(msg)
            if i == 0:
                request = TargetRequest(id=TARGET_ID, label=LABEL, bbox=box_to_msg(seq.init_box))
                request.header = msg.header
                peer.target_pub.publish(request)
            end = time.monotonic() + RESEND_S
            while key not in peer.by_stamp("tracks") and time.monotonic() < end:
                time.sleep(POLL_S)
    return stamps


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE, reason=NO_VISION_MSGS)
def test_detections_match_tracks_with_the_images_header(tracker, shared):
    proc, peer = tracker("vision_on")
    stamps = _track_a_few_frames(peer, shared)
    # Tracks and detections are published back to back; the last detections may trail the tracks.
    _wait(lambda: all(s in peer.by_stamp("detections") for s in stamps), WAIT_S, "detections for every frame")
    tracks, detections = peer.by_stamp("tracks"), peer.by_stamp("detections")
    with_target = [s for s in stamps if tracks[s].objects]
    assert len(with_target) >= FRAMES - 1, "the target was tracked on the frames after the first"
    for stamp in stamps:
        arr, objs = detections[stamp], tracks[stamp].objects
        assert arr.header.frame_id == "camera" and (arr.header.stamp.sec, arr.header.stamp.nanosec) == stamp
        assert len(arr.detections) == len(objs)
        for det, obj in zip(arr.detections, objs, strict=True):
            assert det.header == arr.header
            assert det.id == obj.id == TARGET_ID
            assert len(det.results) == 1
            assert det.results[0].hypothesis.class_id == LABEL
            assert det.results[0].hypothesis.score == pytest.approx(obj.score, rel=1e-6)
            assert 0.0 <= det.results[0].hypothesis.score <= 1.0
            ours = (obj.bbox.center.position.x, obj.bbox.center.position.y, obj.bbox.size_x, obj.bbox.size_y)
            theirs = (det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.size_x, det.bbox.size_y)
            assert theirs == ours
            assert np.all(np.isfinite(theirs)) and det.bbox.size_x > 0 and det.bbox.size_y > 0
    assert "not publishing" not in proc.log_text()


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE, reason=NO_VISION_MSGS)
def test_publish_detections_false_switches_the_output_off(tracker, shared):
    proc, peer = tracker("vision_off", publish_detections=False)
    _track_a_few_frames(peer, shared)
    assert peer.publishers_of(DETECTIONS_TOPIC) == 0
    assert not peer.by_stamp("detections")
    assert "publish_detections: false" in proc.log_text()


@pytest.mark.skipif(VISION_MSGS_AVAILABLE, reason="vision_msgs is installed here: the output is tested above")
def test_without_vision_msgs_the_node_tracks_and_says_so(tracker, shared):
    proc, peer = tracker("vision_missing")
    stamps = _track_a_few_frames(peer, shared)
    assert any(peer.by_stamp("tracks")[s].objects for s in stamps)
    assert peer.publishers_of(DETECTIONS_TOPIC) == 0
    assert "vision_msgs is not installed" in proc.log_text()
