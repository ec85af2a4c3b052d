"""Play a bag into the live tracker node over real DDS, record what it publishes, score it.

Timing is kept (scaled by ``rate``); ``/clock`` follows the bag time so the node can run with
``use_sim_time``. The node's tracks and events go into an output bag; the tracks are scored
against the bag's ground truth with the evaluation metrics; dropped frames and the latency from
publishing a frame to receiving its tracks are reported.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Writer

from stark_ros.bag.io import (
    ARRAY,
    BAG_VERSION,
    COMPRESSED,
    EVENT,
    NS,
    STORAGE,
    BagError,
    read_bag,
    stamp_ns,
    typestore,
)
from stark_ros.evaluation.metrics import sequence_curves, sequence_metrics
from stark_ros.evaluation.report import write_report
from stark_ros.node.process import NodeProcessError, TrackerNodeProcess

DRAIN_TIMEOUT_S = 10.0
REPORT_NAME = "tracker node (bag replay)"


@dataclass
class ReplayResult:
    frames: int
    tracked: int
    dropped: int
    latency_ms: dict
    metrics: dict | None
    events: list
    tracks: dict            # stamp ns -> box of the first target

    def summary(self) -> dict:
        return {"frames": self.frames, "tracked": self.tracked, "dropped": self.dropped,
                "latency_ms": self.latency_ms, "metrics": self.metrics, "events": self.events}


def _to_ros(msg, ros_type):
    """A rosbags message object -> the rclpy message of the same type (field by field)."""
    out = ros_type()
    for name in ros_type.get_fields_and_field_types():
        value = getattr(msg, name)
        current = getattr(out, name)
        if hasattr(current, "get_fields_and_field_types"):
            value = _to_ros(value, type(current))
        elif isinstance(value, np.ndarray):
            value = value.tobytes() if value.dtype == np.uint8 else value.tolist()
        elif isinstance(value, list) and value and hasattr(value[0], "__dataclass_fields__"):
            raise BagError(f"cannot convert a list of messages in field {name}")
        setattr(out, name, value)
    return out


def replay(bag, out_dir, model: str | None = None, rate: float = 1.0, image_topic: str | None = None,
           target_topic: str | None = None, gt_topic: str | None = None, use_sim_time: bool = False,
           params_file: str | None = None, storage: str = "mcap", extra_params: dict | None = None) -> ReplayResult:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage, Image

    from stark_ros.msg import TargetRequest, TrackedObjectArray, TrackEvent
    from stark_ros.node.messages import msg_to_box

    if rate <= 0:
        raise ValueError("rate must be > 0")
    contents = read_bag(bag, image_topic, target_topic, gt_topic)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_bag = out_dir / "tracks_bag"
    if out_bag.exists():
        raise BagError(f"{out_bag} already exists")
    compressed = contents.image_type == COMPRESSED
    ns = f"replay_{os.getpid()}"
    params = {"compressed": compressed, "use_sim_time": use_sim_time, **(extra_params or {})}
    if model:
        params["model"] = str(model)
    try:
        tracker = TrackerNodeProcess(out_dir / "tracker_node.log", params, params_file, namespace=ns).start()
    except NodeProcessError as exc:
        raise BagError(str(exc)) from exc

    store = typestore()
    received_tracks, received_events, arrival = [], [], {}
    lock = threading.Lock()
    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    node = rclpy.create_node(f"bag_replay_{os.getpid()}", namespace=f"/{ns}")
    reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)

    def on_tracks(msg):
        with lock:
            arrival[stamp_ns(msg.header)] = time.monotonic_ns()
            received_tracks.append(msg)

    node.create_subscription(TrackedObjectArray, "tracks", on_tracks, reliable)
    node.create_subscription(TrackEvent, "events", lambda m: received_events.append(m), reliable)
    ros_img_type = CompressedImage if compressed else Image
    img_pub = node.create_publisher(ros_img_type, "image/compressed" if compressed else "image",
                                    qos_profile_sensor_data)
    tgt_pub = node.create_publisher(TargetRequest, "target", reliable)
    clock_pub = node.create_publisher(Clock, "/clock", 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    published = {}
    try:
        try:
            tracker.wait_for_subscribers(img_pub, tgt_pub)
        except NodeProcessError as exc:
            raise BagError(str(exc)) from exc
        items = [(ts, "frame", m) for ts, m in contents.frames] + [(ts, "target", m) for ts, m in contents.targets]
        items.sort(key=lambda x: (x[0], x[1] != "frame"))  # a frame before a request of the same time
        t0_bag, t0_wall = items[0][0], time.monotonic()
        for ts, kind, msg in items:
            wait = (ts - t0_bag) / NS / rate - (time.monotonic() - t0_wall)
            if wait > 0:
                time.sleep(wait)
            clock_pub.publish(Clock(clock=_to_ros(msg.header.stamp, type(Clock().clock))))
            if kind == "frame":
                ros_msg = _to_ros(msg, ros_img_type)
                published[stamp_ns(msg.header)] = time.monotonic_ns()
                img_pub.publish(ros_msg)
            else:
                tgt_pub.publish(_to_ros(msg, TargetRequest))
        last = stamp_ns(contents.frames[-1][1].header)
        end = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < end and last not in arrival:
            time.sleep(0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
        if own_context:
            rclpy.try_shutdown()
        tracker.stop()

    # Everything the node said, into a bag of its own (written under a temporary name).
    t = store.types
    tmp = out_bag.with_name(out_bag.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with Writer(tmp, version=BAG_VERSION, storage_plugin=STORAGE[storage]) as writer:
        tc = writer.add_connection("/tracks", ARRAY, typestore=store)
        ec = writer.add_connection("/events", EVENT, typestore=store)
        for m in received_tracks:
            writer.write(tc, stamp_ns(m.header), store.serialize_cdr(_from_ros(m, t, ARRAY), ARRAY))
        for m in received_events:
            writer.write(ec, stamp_ns(m.header), store.serialize_cdr(_from_ros(m, t, EVENT), EVENT))
    tmp.rename(out_bag)

    tracks = {}
    for m in received_tracks:
        if m.objects:
            tracks[stamp_ns(m.header)] = msg_to_box(m.objects[0].bbox)
    lat = [(arrival[s] - published[s]) / 1e6 for s in tracks if s in published and s in arrival]
    latency = ({f"p{q}": float(np.percentile(lat, q)) for q in (50, 90, 99)} if lat else {})
    metrics = None
    if contents.ground_truth and tracks:
        stamps = sorted(tracks)
        gt = np.array([contents.ground_truth.get(s, np.full(4, np.nan)) for s in stamps])
        pred = np.array([tracks[s] for s in stamps])
        metrics = sequence_metrics(pred, gt).as_dict()
        times = sorted(arrival[s] for s in stamps if s in arrival)
        fps = (len(times) - 1) / ((times[-1] - times[0]) / NS) if len(times) > 1 and times[-1] > times[0] else 0.0
        row = {**metrics, "fps": fps}
        scores = {REPORT_NAME: {"mean": row, "sequences": {Path(bag).name: row}}}
        write_report(scores, {REPORT_NAME: sequence_curves(pred, gt)}, out_dir, title=f"bag replay: {bag}")
    tracked_stamps = {stamp_ns(m.header) for m in received_tracks}
    result = ReplayResult(
        frames=len(contents.frames), tracked=len(tracks),
        dropped=len(contents.frames) - len(tracked_stamps & set(published)), latency_ms=latency, metrics=metrics,
        events=[{"id": e.id, "type": int(e.type), "reason": e.reason, "stamp_ns": stamp_ns(e.header)}
                for e in received_events], tracks=tracks)
    (out_dir / "replay.json").write_text(json.dumps(result.summary(), indent=2, default=float))
    return result


def _from_ros(msg, types, typename: str):
    """An rclpy message -> the rosbags message of the same type (for writing the output bag)."""
    cls = types[typename]
    kwargs = {}
    for name, ftype in msg.get_fields_and_field_types().items():
        value = getattr(msg, name)
        if hasattr(value, "get_fields_and_field_types"):
            sub = _sub_typename(ftype, typename)
            kwargs[name] = _from_ros(value, types, sub)
        elif isinstance(value, list) and value and hasattr(value[0], "get_fields_and_field_types"):
            sub = _sub_typename(ftype[len("sequence<"):-1], typename)
            kwargs[name] = [_from_ros(v, types, sub) for v in value]
        elif isinstance(value, float) and math.isnan(value):
            kwargs[name] = value
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _sub_typename(ftype: str, parent: str) -> str:
    """rclpy field type ('stark_ros/BoundingBox2D', 'std_msgs/Header') -> 'pkg/msg/Name'."""
    pkg, _, name = ftype.partition("/")
    if not name:
        pkg, name = parent.split("/")[0], pkg
    return f"{pkg}/msg/{name}"
