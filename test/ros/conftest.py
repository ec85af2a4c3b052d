"""Real rclpy nodes over real DDS: the tracker node runs as its own process (the installed
executable, started the way a user starts it), the test talks to it from an rclpy node."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run the tests through `make test`)")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from stark_ros.msg import TargetRequest, TrackedObjectArray, TrackEvent  # noqa: E402

from stark_ros.core import locate  # noqa: E402
from stark_ros.node.image_conversion import ImageConverter  # noqa: E402
from stark_ros.node.messages import box_to_msg  # noqa: E402
from stark_ros.node.process import DISCOVERY_SETTLE_S  # noqa: E402

# The installed package, wherever its route put it (the venv of `make setup`, a colcon install).
PACKAGE_SHARE = locate.share_dir()
EXECUTABLE = locate.executable()
# Both sides of the tests' DDS traffic use the transport profile the launch file applies (large
# raw frames do not fit Fast DDS's default shared-memory segment); set before any participant exists.
TRANSPORT_PROFILE = Path(PACKAGE_SHARE) / "config" / "fastdds_large_images.xml"
if TRANSPORT_PROFILE.is_file():
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(TRANSPORT_PROFILE))
DISCOVERY_TIMEOUT_S = 30.0
# Until the node has answered once, a best-effort frame may still fall into the gap between the
# publisher seeing the subscription and the subscription matching the publisher (longer on a
# loaded machine): the first frame is sent again after this long without an answer.
FIRST_FRAME_RESEND_S = 2.0
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
# As deep as the node's events publisher: a burst of answers must not overwrite each other in the
# test's reader before its executor takes them.
EVENTS_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def wait_for(predicate, timeout: float, what: str, poll: float = 0.02, raise_on_timeout: bool = True):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    if raise_on_timeout:
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
    return None


class TrackerProcess:
    """The installed tracker_node executable with the installed YAML and extra -p overrides."""

    def __init__(self, tmp_path: Path, name: str, **params):
        self.name = name
        self.log_path = tmp_path / f"{name}.log"
        args = [str(EXECUTABLE), "--ros-args", "--params-file", str(PACKAGE_SHARE / "config" / "tracker.yaml"),
                "-r", f"__node:={name}", "-r", f"__ns:=/{name}"]
        for key, value in params.items():
            if isinstance(value, bool):
                value = str(value).lower()
            args += ["-p", f"{key}:={value}"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy())

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Client:
    """The test's side: publishes images and requests into the node's namespace, records output."""

    def __init__(self, namespace: str, compressed: bool = False, context=None):
        context = context or _CONTEXT
        self.node = rclpy.create_node(f"client_{namespace}", namespace=f"/{namespace}", context=context)
        self.compressed = compressed
        msg_type = CompressedImage if compressed else Image
        topic = "image/compressed" if compressed else "image"
        self.image_pub = self.node.create_publisher(msg_type, topic, qos_profile_sensor_data)
        self.target_pub = self.node.create_publisher(TargetRequest, "target", EVENTS_QOS)
        self.tracks: list = []
        self.events: list = []
        self._lock = threading.Lock()
        self.node.create_subscription(TrackedObjectArray, "tracks", self._on_tracks, RELIABLE)
        self.node.create_subscription(TrackEvent, "events", self._on_event, EVENTS_QOS)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_tracks(self, msg):
        with self._lock:
            self.tracks.append(msg)

    def _on_event(self, msg):
        with self._lock:
            self.events.append(msg)

    def wait_connected(self):
        wait_for(lambda: self.image_pub.get_subscription_count() > 0 and self.target_pub.get_subscription_count() > 0
                 and self.node.count_publishers(f"/{self.node.get_namespace().strip('/')}/tracks") > 0,
                 DISCOVERY_TIMEOUT_S, "the tracker node to appear")
        time.sleep(DISCOVERY_SETTLE_S)

    def image_msg(self, rgb, stamp_ns: int, frame_id: str = "camera", encoding: str = "bgr8"):
        if self.compressed:
            msg = CompressedImage(format="jpeg", data=ImageConverter.rgb_to_jpeg(rgb))
        else:
            msg = Image(**ImageConverter.rgb_to_fields(rgb, encoding))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.header.frame_id = frame_id
        return msg

    def publish_and_wait(self, msg, timeout: float = 30.0, resend: bool = False):
        """Publish one frame and wait for the tracks computed on it (lock step: nothing dropped).
        Only tracks that arrive after this call count (frames may repeat a stamp). Until the node
        has answered once, or always with ``resend``, the frame is sent again every few seconds."""
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self._lock:
            since = len(self.tracks)
        self.image_pub.publish(msg)
        end = time.monotonic() + timeout
        while (resend or since == 0) and time.monotonic() < end:
            if wait_for(lambda: self.tracks_for(stamp, since), FIRST_FRAME_RESEND_S, "", raise_on_timeout=False):
                break
            self.image_pub.publish(msg)
        return wait_for(lambda: self.tracks_for(stamp, since), max(0.0, end - time.monotonic()),
                        f"tracks for the frame stamped {stamp}")

    def tracks_for(self, stamp, since: int = 0):
        with self._lock:
            for t in self.tracks[since:]:
                if (t.header.stamp.sec, t.header.stamp.nanosec) == stamp:
                    return t
        return None

    def request(self, box, stamp_ns: int, target_id: str = "", label: str = "", frame_id: str = "camera"):
        msg = TargetRequest(id=target_id, label=label, bbox=box_to_msg(box))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.header.frame_id = frame_id
        self.target_pub.publish(msg)

    def wait_event(self, predicate, timeout: float = 20.0, what: str = "an event"):
        def find():
            with self._lock:
                return next((e for e in self.events if predicate(e)), None)
        return wait_for(find, timeout, what)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


# The ROS tests' own context: other groups (test/install) init and shut down rclpy's default one,
# and a session-wide default context made them fail with "Context.init() must only be called once".
_CONTEXT = rclpy.Context()


@pytest.fixture(scope="session")
def ros_context():
    rclpy.init(context=_CONTEXT)
    yield _CONTEXT
    rclpy.try_shutdown(context=_CONTEXT)


@pytest.fixture()
def tracker(ros_context, tmp_path, untrained_lite_model, request):
    """factory(name, compressed=False, **params) -> (TrackerProcess, Client); stopped after the test."""
    started = []

    def start(name: str, compressed: bool = False, model=None, **params):
        proc = TrackerProcess(tmp_path, name, model=str(model or untrained_lite_model), compressed=compressed,
                              intra_op_threads=1, **params)
        client = Client(name, compressed)
        started.append((proc, client))
        try:
            client.wait_connected()
        except AssertionError:
            raise AssertionError(f"node did not come up; its log:\n{proc.log()}") from None
        return proc, client

    yield start
    for proc, client in started:
        client.close()
        proc.stop()
