"""Play a bag into the live tracker node over real DDS, record what it publishes, score it.

Timing is kept (scaled by ``rate``); ``/clock`` follows the bag time so the node can run with
``use_sim_time``. The node's tracks and events (and its ``detections`` where vision_msgs is
installed: a bag recorded on a ROS 2 machine has what a detection consumer reads) go into an output
bag; the tracks are scored
against the bag's ground truth with the evaluation metrics; dropped frames and the latency from
publishing a frame to receiving its tracks are reported.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Writer
from rosbags.typesys import get_types_from_msg

from stark_ros.bag.io import (
    ARRAY,
    BAG_VERSION,
    COMPRESSED,
    EVENT,
    STORAGE,
    BagContents,
    BagError,
    read_bag,
    typestore,
)
from stark_ros.client.process import NodeProcessError, TrackerNodeProcess
from stark_ros.core.boxes import msg_to_box
from stark_ros.core.stamps import NS_PER_S, stamp_ns
from stark_ros.evaluation.metrics import sequence_curves, sequence_metrics
from stark_ros.evaluation.report import write_report
from stark_ros.interface import DETECTIONS_TOPIC

REPORT_NAME = "tracker node (bag replay)"
LATENCY_PERCENTILES = (50, 90, 99)
CLOCK_QUEUE_DEPTH = 10
FRAME, TARGET = "frame", "target"
DETECTIONS = "vision_msgs/msg/Detection2DArray"


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
    if rate <= 0:
        raise ValueError("rate must be > 0")
    contents = read_bag(bag, image_topic, target_topic, gt_topic)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_bag = out_dir / "tracks_bag"
    if out_bag.exists():
        raise BagError(f"{out_bag} already exists")
    params = {"image_transport": "compressed" if contents.image_type == COMPRESSED else "raw",
              "use_sim_time": use_sim_time, **(extra_params or {})}
    if model:
        params["model"] = str(model)
    client, detections = _play(contents, rate, TrackerNodeProcess(out_dir / "tracker_node.log", params, params_file,
                                                                  namespace=f"replay_{os.getpid()}"))
    _write_bag(out_bag, client.tracks, client.events, detections, storage)
    result = _score(contents, client, Path(bag), out_dir)
    (out_dir / "replay.json").write_text(json.dumps(result.summary(), indent=2, default=float))
    return result


def _play(contents: BagContents, rate: float, tracker: TrackerNodeProcess):
    """The bag's frames and requests into the node, timing kept (scaled by ``rate``), ``/clock``
    following the bag; the (closed) client with what the node answered, and its detections (None
    where vision_msgs is not installed)."""
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage, Image

    from stark_ros.client.harness import TrackerClient, paced
    from stark_ros.msg import TargetRequest

    compressed = contents.image_type == COMPRESSED
    image_type = CompressedImage if compressed else Image
    items = [(ts, FRAME, m) for ts, m in contents.frames] + [(ts, TARGET, m) for ts, m in contents.targets]
    items.sort(key=lambda x: (x[0], x[1] != FRAME))  # a frame before a request of the same time
    try:
        with tracker, TrackerClient(tracker.namespace, compressed=compressed,
                                    name=f"bag_replay_{os.getpid()}") as client:
            clock_pub = client.node.create_publisher(Clock, "/clock", CLOCK_QUEUE_DEPTH)
            detections = _listen_detections(client)
            client.wait_connected(tracker)
            for i in paced((ts - items[0][0]) / NS_PER_S / rate for ts, _, _ in items):
                _, kind, msg = items[i]
                clock_pub.publish(Clock(clock=_to_ros(msg.header.stamp, type(Clock().clock))))
                if kind == FRAME:
                    client.publish_image(_to_ros(msg, image_type))
                else:
                    client.target_pub.publish(_to_ros(msg, TargetRequest))
            client.wait_last_tracks(stamp_ns(contents.frames[-1][1].header.stamp))
    except NodeProcessError as exc:
        raise BagError(str(exc)) from exc
    return client, detections


def _listen_detections(client) -> list | None:
    """Every ``detections`` message of the node, where vision_msgs is installed (else None)."""
    try:
        from vision_msgs.msg import Detection2DArray
    except ImportError:
        return None
    return client.listen(Detection2DArray, DETECTIONS_TOPIC)


def _register_vision_msgs(store) -> None:
    """vision_msgs' types from its installed .msg files (rosbags' type store has none of them)."""
    from ament_index_python.packages import get_package_share_directory

    types = {}
    for path in sorted((Path(get_package_share_directory("vision_msgs")) / "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    store.register(types)


def _write_bag(out_bag: Path, tracks: list, events: list, detections: list | None, storage: str) -> None:
    """Everything the node said, into a bag of its own (written under a temporary name)."""
    store = typestore()
    topics = [("/tracks", ARRAY, tracks), ("/events", EVENT, events)]
    if detections is not None:
        _register_vision_msgs(store)
        topics.append((f"/{DETECTIONS_TOPIC}", DETECTIONS, detections))
    tmp = out_bag.with_name(out_bag.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with Writer(tmp, version=BAG_VERSION, storage_plugin=STORAGE[storage]) as writer:
        for topic, typename, messages in topics:
            conn = writer.add_connection(topic, typename, typestore=store)
            for m in messages:
                writer.write(conn, stamp_ns(m.header.stamp), store.serialize_cdr(_from_ros(m, store.types, typename),
                                                                                typename))
    tmp.rename(out_bag)


def _score(contents: BagContents, client, bag: Path, out_dir: Path) -> ReplayResult:
    """Tracks against the bag's ground truth (and a report beside them), latency, dropped frames."""
    tracks = {s: msg_to_box(m.objects[0].bbox) for s, m in client.tracks_by_stamp().items() if m.objects}
    lat = client.latencies_ms(tracks)
    metrics = None
    if contents.ground_truth and tracks:
        stamps = sorted(tracks)
        gt = np.array([contents.ground_truth.get(s, np.full(4, np.nan)) for s in stamps])
        pred = np.array([tracks[s] for s in stamps])
        metrics = sequence_metrics(pred, gt).as_dict()
        times = sorted(client.arrived_ns[s] for s in stamps if s in client.arrived_ns)
        span_s = (times[-1] - times[0]) / NS_PER_S if times else 0.0
        row = {**metrics, "fps": (len(times) - 1) / span_s if span_s > 0 else 0.0}
        scores = {REPORT_NAME: {"mean": row, "sequences": {bag.name: row}}}
        write_report(scores, {REPORT_NAME: sequence_curves(pred, gt)}, out_dir, title=f"bag replay: {bag}")
    return ReplayResult(
        frames=len(contents.frames), tracked=len(tracks),
        dropped=len(contents.frames) - len(set(client.arrived_ns) & set(client.published_ns)),
        latency_ms={f"p{q}": float(np.percentile(lat, q)) for q in LATENCY_PERCENTILES} if lat else {},
        metrics=metrics, tracks=tracks,
        events=[{"id": e.id, "type": int(e.type), "reason": e.reason, "stamp_ns": stamp_ns(e.header.stamp)}
                for e in client.events])


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
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _sub_typename(ftype: str, parent: str) -> str:
    """rclpy field type ('stark_ros/BoundingBox2D', 'std_msgs/Header') -> 'pkg/msg/Name'."""
    pkg, _, name = ftype.partition("/")
    if not name:
        pkg, name = parent.split("/")[0], pkg
    return f"{pkg}/msg/{name}"
