"""One client of a running tracker node: publishes frames and target requests into the node's
namespace, records the tracks and events it answers with (and, if asked, its /diagnostics), and
waits for them with a timeout. The demo, bag replay, the node benchmarks and the ROS tests all talk
to the node through it, with the QoS and names of :mod:`stark_ros.interface`.

What it records is keyed by the one stamp rule (:func:`stark_ros.core.stamps.stamp_ns`): a frame
is named by its header stamp in integer nanoseconds, and the node echoes that header on its tracks.
Times (``published_ns``, ``arrived_ns``) are this process's monotonic clock, so that a camera in
another process on the same machine can be compared with them.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import CompressedImage, Image

from stark_ros import interface
from stark_ros.client.process import DISCOVERY_SETTLE_S, STARTUP_TIMEOUT_S, NodeProcessError, TrackerNodeProcess
from stark_ros.core.stamps import set_stamp, stamp_ns
from stark_ros.msg import TargetRequest, TrackedObjectArray, TrackEvent

LOG = logging.getLogger(__name__)
POLL_S = 0.02
# How long close() waits for the executor thread to leave its wait set after the executor's shutdown.
SPINNER_JOIN_TIMEOUT_S = 5.0
DEFAULT_WAIT_S = 30.0
# After a camera's pace of frames, how long the tools wait for the tracks of the last one before
# they go on with what came: the node may have dropped that frame, and then none come.
LAST_TRACKS_TIMEOUT_S = 10.0
# Until the node has answered once, a best-effort frame may still fall into the gap between the
# publisher seeing the subscription and the subscription matching the publisher (longer on a
# loaded machine): the frame is sent again after this long without an answer.
RESEND_S = 2.0
NS_PER_MS = 1e6
_names = itertools.count()


class WaitTimeout(TimeoutError):
    """What was waited for did not happen in time; the message says what it was."""


def wait_for(predicate: Callable, timeout: float, what: str, poll: float = POLL_S, raise_on_timeout: bool = True):
    """The first truthy value of ``predicate()`` within ``timeout`` seconds; else WaitTimeout (or None)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= end:
            break
        time.sleep(poll)
    if not value and raise_on_timeout:
        raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
    return value or None


def paced(times_s: Iterable[float]) -> Iterator[int]:
    """The index of each time (seconds after the first call) once it has come: a camera's clock.
    The times hold whatever a step costs: a late step is followed by shorter waits, so a loaded
    publisher keeps the rate it was asked for (as a camera does) instead of slowing down."""
    start = time.monotonic()
    for i, t in enumerate(times_s):
        wait = start + t - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield i


class TrackerClient:
    """An rclpy node in the tracker's namespace with the publishers and subscriptions a client needs.

    ``listen=False``: a camera only (no tracks or events subscriptions). ``diagnostics``: the name of
    the node whose /diagnostics values to keep (latest of each key) in ``diagnostics_values``.
    ``on_tracks`` / ``on_event`` are called with each message after it is recorded (on the
    executor's thread). Without ``context`` the client has its own rclpy context, shut down by
    :meth:`close`."""

    def __init__(self, namespace: str = "", *, compressed: bool = False, name: str | None = None, context=None,
                 listen: bool = True, diagnostics: str | None = None,
                 on_tracks: Callable | None = None, on_event: Callable | None = None):
        self._own_context = context is None
        self.context = rclpy.Context() if context is None else context
        if self._own_context:
            rclpy.init(context=self.context)
        namespace = namespace.strip("/")
        self.node = rclpy.create_node(name or f"stark_client_{os.getpid()}_{next(_names)}",
                                      namespace=f"/{namespace}", context=self.context)
        self.compressed = compressed
        image_type = CompressedImage if compressed else Image
        self.image_pub = self.node.create_publisher(image_type, interface.image_topic(compressed), interface.IMAGE_QOS)
        self.target_pub = self.node.create_publisher(TargetRequest, interface.TARGET_TOPIC, interface.REQUEST_QOS)
        self.listening = listen
        self.tracks: list = []
        self.events: list = []
        self.published_ns: dict[int, int] = {}   # frame stamp -> when it was (last) published
        self.arrived_ns: dict[int, int] = {}     # frame stamp -> when its tracks (first) arrived
        self.diagnostics_values: dict[str, str] = {}
        self._lock = threading.Lock()
        self._on_tracks, self._on_event = on_tracks, on_event
        self._service_clients: dict = {}
        if listen:
            node = self.node
            node.create_subscription(TrackedObjectArray, interface.TRACKS_TOPIC, self._tracks_cb, interface.TRACKS_QOS)
            node.create_subscription(TrackEvent, interface.EVENTS_TOPIC, self._event_cb, interface.EVENTS_QOS)
        if diagnostics is not None:
            status_name = f"{diagnostics}: {interface.DIAGNOSTICS_STATUS}"
            self.node.create_subscription(DiagnosticArray, interface.DIAGNOSTICS_TOPIC,
                                          lambda msg: self._diagnostics_cb(msg, status_name), interface.DIAGNOSTICS_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    # ------------------------------------------------------------------------------ recording
    def _tracks_cb(self, msg) -> None:
        now = time.monotonic_ns()
        with self._lock:
            self.tracks.append(msg)
            self.arrived_ns.setdefault(stamp_ns(msg.header.stamp), now)
        if self._on_tracks is not None:
            self._on_tracks(msg)

    def _event_cb(self, msg) -> None:
        with self._lock:
            self.events.append(msg)
        if self._on_event is not None:
            self._on_event(msg)

    def _diagnostics_cb(self, msg, status_name: str) -> None:
        for status in msg.status:
            if status.name == status_name:
                with self._lock:
                    self.diagnostics_values.update({kv.key: kv.value for kv in status.values})

    def listen(self, msg_type, topic: str, qos=interface.TRACKS_QOS) -> list:
        """Keep every message of another topic of the node (e.g. ``detections``) in the returned list."""
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def latest_diagnostics(self) -> dict[str, str]:
        """The node's /diagnostics values as last published (a copy)."""
        with self._lock:
            return dict(self.diagnostics_values)

    def tracks_by_stamp(self) -> dict:
        """Frame stamp -> the (last) tracks message computed on it."""
        with self._lock:
            return {stamp_ns(m.header.stamp): m for m in self.tracks}

    def latencies_ms(self, stamps: Iterable[int] | None = None) -> list[float]:
        """Publishing a frame -> receiving its tracks, per frame (of ``stamps``; default: all) that has both."""
        with self._lock:
            keys = self.published_ns.keys() if stamps is None else stamps
            return [(self.arrived_ns[s] - self.published_ns[s]) / NS_PER_MS for s in keys
                    if s in self.arrived_ns and s in self.published_ns]

    # ------------------------------------------------------------------------------ sending
    def now_ns(self) -> int:
        """This client's ROS clock, for stamping frames as a camera driver does."""
        return self.node.get_clock().now().nanoseconds

    def image_msg(self, rgb: np.ndarray, stamp: int, frame_id: str = interface.DEFAULT_FRAME_ID,
                  encoding: str = interface.DEFAULT_ENCODING):
        """A frame as the message type this client publishes (JPEG when ``compressed``)."""
        if self.compressed:
            return interface.compressed_image_msg(rgb, stamp, frame_id)
        return interface.image_msg(rgb, stamp, frame_id, encoding)

    def publish_image(self, msg) -> int:
        """Publish a frame message; returns its stamp (the key of what is recorded about it)."""
        stamp = stamp_ns(msg.header.stamp)
        with self._lock:
            self.published_ns[stamp] = time.monotonic_ns()
        self.image_pub.publish(msg)
        return stamp

    def request(self, box, stamp: int | None = None, *, header=None, target_id: str = "", label: str = "",
                frame_id: str = interface.DEFAULT_FRAME_ID) -> None:
        """Ask the node to track ``box`` (x, y, w, h) on the frame with ``header`` (or stamped ``stamp``)."""
        msg = TargetRequest(id=target_id, label=label, bbox=interface.box_to_msg(box))
        if header is not None:
            msg.header = header
        else:
            set_stamp(msg.header, stamp)
            msg.header.frame_id = frame_id
        self.target_pub.publish(msg)

    def call_async(self, srv_type, name: str, request, timeout: float = DEFAULT_WAIT_S):
        """Call one of the node's services; the future of its answer."""
        key = (srv_type, name)
        if key not in self._service_clients:
            self._service_clients[key] = self.node.create_client(srv_type, name, qos_profile=interface.SERVICE_QOS)
        cli = self._service_clients[key]
        if not cli.wait_for_service(timeout_sec=timeout):
            raise WaitTimeout(f"service {name} not available after {timeout:.0f} s")
        return cli.call_async(request)

    def call(self, srv_type, name: str, request, timeout: float = DEFAULT_WAIT_S):
        future = self.call_async(srv_type, name, request, timeout)
        wait_for(future.done, timeout, f"the answer of {name}")
        return future.result()

    # ------------------------------------------------------------------------------ waiting
    def wait_connected(self, process: TrackerNodeProcess | None = None, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Until the node subscribes to this client's publishers and (when listening) publishes
        tracks, then the DDS settle time. With the node's ``process``, its exit ends the wait at
        once with its log (NodeProcessError)."""
        tracks_topic = f"{self.node.get_namespace().rstrip('/')}/{interface.TRACKS_TOPIC}"

        def up():
            if process is not None and process.proc is not None and process.proc.poll() is not None:
                raise NodeProcessError(f"the tracker node exited with code {process.proc.returncode}; its log "
                                       f"({process.log_path}):\n{process.log_text()}")
            return (self.image_pub.get_subscription_count() > 0 and self.target_pub.get_subscription_count() > 0
                    and (not self.listening or self.node.count_publishers(tracks_topic) > 0))
        try:
            wait_for(up, timeout, "the tracker node to appear")
        except WaitTimeout as exc:
            log = f"; its log ({process.log_path}):\n{process.log_text()}" if process is not None else ""
            raise NodeProcessError(f"{exc}{log}") from None
        time.sleep(DISCOVERY_SETTLE_S)

    def tracks_for(self, stamp: int, since: int = 0):
        """The tracks computed on the frame stamped ``stamp`` among those received after the first ``since``."""
        with self._lock:
            return next((t for t in self.tracks[since:] if stamp_ns(t.header.stamp) == stamp), None)

    def wait_tracks(self, stamp: int, timeout: float = DEFAULT_WAIT_S, raise_on_timeout: bool = True):
        return wait_for(lambda: self.tracks_for(stamp), timeout, f"tracks for the frame stamped {stamp} ns",
                        raise_on_timeout=raise_on_timeout)

    def wait_last_tracks(self, stamp: int):
        """The tracks of the last frame published at a camera's pace (stamped ``stamp``), or None after
        :data:`LAST_TRACKS_TIMEOUT_S`."""
        return self.wait_tracks(stamp, LAST_TRACKS_TIMEOUT_S, raise_on_timeout=False)

    def publish_and_wait(self, msg, timeout: float = DEFAULT_WAIT_S, resend: bool = False):
        """Publish one frame and wait for the tracks computed on it (lock step: nothing dropped).
        Only tracks that arrive after this call count (frames may repeat a stamp). Until the node
        has answered once, or always with ``resend``, the frame is sent again every few seconds."""
        with self._lock:
            since = len(self.tracks)
        stamp = self.publish_image(msg)
        end = time.monotonic() + timeout
        while (resend or since == 0) and time.monotonic() < end:
            if wait_for(lambda: self.tracks_for(stamp, since), RESEND_S, "", raise_on_timeout=False):
                break
            self.publish_image(msg)
        return wait_for(lambda: self.tracks_for(stamp, since), max(0.0, end - time.monotonic()),
                        f"tracks for the frame stamped {stamp} ns")

    def wait_event(self, predicate: Callable, timeout: float = DEFAULT_WAIT_S, what: str = "an event"):
        def find():
            with self._lock:
                return next((e for e in self.events if predicate(e)), None)
        return wait_for(find, timeout, what)

    # ------------------------------------------------------------------------------ lifetime
    def close(self) -> None:
        self.executor.shutdown()
        # The spinning thread leaves its wait set before the node's entities go: destroying them while
        # it still holds them in a wait deadlocked rclpy (seen once in CI: the spin thread held the GIL
        # in the wait set's exit, the test process hung).
        self._spinner.join(SPINNER_JOIN_TIMEOUT_S)
        if self._spinner.is_alive():
            LOG.warning("the client's executor thread did not stop within %g s", SPINNER_JOIN_TIMEOUT_S)
        self.node.destroy_node()
        if self._own_context:
            rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> TrackerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
