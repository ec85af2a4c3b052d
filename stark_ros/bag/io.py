"""ROS 2 bags of tracking sequences, with `rosbags` (no ROS install needed, no hand-written format).

A sequence bag holds the frames (``sensor_msgs/Image`` or ``CompressedImage``), the initial box as
a ``stark_ros/msg/TargetRequest`` stamped on the first frame, and the ground truth as
``stark_ros/msg/TrackedObjectArray`` (one object with id ``ground_truth``, none where the target is
not annotated), each stamped like its frame.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from stark_ros.core import locate
from stark_ros.core.boxes import box_to_msg_values, msg_to_box
from stark_ros.core.images import ENCODINGS, ImageConverter
from stark_ros.core.stamps import NS_PER_S, split_ns, stamp_ns
from stark_ros.datasets import load_simple_sequence

IMAGE_TOPIC = "/camera/image"
COMPRESSED_TOPIC = "/camera/image/compressed"
TARGET_TOPIC = "/target"
GT_TOPIC = "/ground_truth"
GT_ID = "ground_truth"
BAG_VERSION = 9
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
TARGET = "stark_ros/msg/TargetRequest"
ARRAY = "stark_ros/msg/TrackedObjectArray"
EVENT = "stark_ros/msg/TrackEvent"
STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(RuntimeError):
    """A bag that cannot be written or read as asked; the message says why."""


def msg_dir() -> Path:
    """The package's installed .msg files."""
    try:
        return locate.msg_dir()
    except locate.NotInstalledError as exc:
        raise BagError(str(exc)) from None


def typestore():
    """ROS 2 standard types plus the stark_ros messages, registered from their .msg files."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"stark_ros/msg/{path.stem}"))
    store.register(types)
    return store


def _stamp(store, ns: int):
    sec, nanosec = split_ns(ns)
    return store.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def _header(store, ns: int, frame_id: str):
    return store.types["std_msgs/msg/Header"](stamp=_stamp(store, ns), frame_id=frame_id)


def box_msg(store, box):
    t = store.types
    cx, cy, w, h = box_to_msg_values(box)
    centre = t["stark_ros/msg/Pose2D"](position=t["stark_ros/msg/Point2D"](x=cx, y=cy), theta=0.0)
    return t["stark_ros/msg/BoundingBox2D"](center=centre, size_x=w, size_y=h)


def write_sequence_bag(seq_dir, out, rate_hz: float = 10.0, compressed: bool = False, storage: str = "mcap",
                       frame_id: str = "camera", start_ns: int = 1_700_000_000 * NS_PER_S) -> Path:
    """A sequence folder (img/ + groundtruth.txt) -> a ROS 2 bag. Written under a temporary name
    and renamed at the end: a failure leaves nothing half-written behind."""
    out = Path(out)
    if out.exists():
        raise BagError(f"{out} already exists")
    if storage not in STORAGE:
        raise BagError(f"unknown storage {storage!r}; choose one of {sorted(STORAGE)}")
    seq = load_simple_sequence(seq_dir)
    store = typestore()
    t = store.types
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    period = int(NS_PER_S / rate_hz)
    conv = ImageConverter()
    try:
        with Writer(tmp, version=BAG_VERSION, storage_plugin=STORAGE[storage]) as writer:
            image_type = COMPRESSED if compressed else IMAGE
            img_conn = writer.add_connection(COMPRESSED_TOPIC if compressed else IMAGE_TOPIC, image_type,
                                             typestore=store)
            target_conn = writer.add_connection(TARGET_TOPIC, TARGET, typestore=store)
            gt_conn = writer.add_connection(GT_TOPIC, ARRAY, typestore=store)
            for i in range(len(seq)):
                ns = start_ns + i * period
                rgb = seq.frame(i)
                header = _header(store, ns, frame_id)
                if compressed:
                    msg = t[COMPRESSED](header=header, format="jpeg",
                                        data=np.frombuffer(conv.rgb_to_jpeg(rgb), dtype=np.uint8))
                else:
                    f = conv.rgb_to_fields(rgb, "bgr8")
                    msg = t[IMAGE](header=header, height=f["height"], width=f["width"], encoding=f["encoding"],
                                   is_bigendian=0, step=f["step"], data=np.frombuffer(f["data"], dtype=np.uint8))
                writer.write(img_conn, ns, store.serialize_cdr(msg, image_type))
                if i == 0:
                    req = t[TARGET](header=header, bbox=box_msg(store, seq.boxes[0]), id="target", label=seq.name)
                    writer.write(target_conn, ns, store.serialize_cdr(req, TARGET))
                objects = []
                if np.all(np.isfinite(seq.boxes[i])):
                    objects.append(t["stark_ros/msg/TrackedObject"](
                        id=GT_ID, label=seq.name, bbox=box_msg(store, seq.boxes[i]), score=1.0, state=0,
                        frames_since_confident=0))
                writer.write(gt_conn, ns, store.serialize_cdr(t[ARRAY](header=header, objects=objects), ARRAY))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class BagContents:
    image_topic: str
    image_type: str
    frames: list = field(default_factory=list)          # (bag time ns, message)
    targets: list = field(default_factory=list)         # (bag time ns, message)
    ground_truth: dict = field(default_factory=dict)    # stamp ns -> box (NaN when absent)


def read_bag(path, image_topic: str | None = None, target_topic: str | None = None,
             gt_topic: str | None = None) -> BagContents:
    """Read frames, target requests and ground truth; topics are found by type unless named."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag")
    store = typestore()
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises its own ReaderError/... types for broken bags
        raise BagError(f"{path}: not a readable ROS 2 bag ({exc})") from None
    try:
        conns = {c.topic: c for c in reader.connections}

        def pick(name, types, what, required):
            if name is not None:
                if name not in conns:
                    raise BagError(f"{path}: no topic {name!r} (topics: {sorted(conns)})")
                return conns[name]
            found = [c for c in conns.values() if c.msgtype in types]
            if not found and required:
                raise BagError(f"{path}: no {what} topic ({' or '.join(types)}); topics: "
                               f"{ {t: c.msgtype for t, c in conns.items()} }")
            return found[0] if found else None

        img = pick(image_topic, (IMAGE, COMPRESSED), "image", True)
        tgt = pick(target_topic, (TARGET,), "target request", False)
        # Ground truth shares its type with tracker output, so it is found by name, not by type.
        gt = pick(gt_topic or GT_TOPIC, (ARRAY,), "ground truth", False) if gt_topic or GT_TOPIC in conns else None
        out = BagContents(image_topic=img.topic, image_type=img.msgtype)
        wanted = [c for c in (img, tgt, gt) if c is not None]
        for conn, ts, raw in reader.messages(connections=wanted):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn is img:
                if conn.msgtype == IMAGE and msg.encoding not in ENCODINGS:
                    raise BagError(f"{path}: frame at {ts} has the unsupported encoding {msg.encoding!r}")
                out.frames.append((ts, msg))
            elif conn is tgt:
                out.targets.append((ts, msg))
            else:
                box = msg_to_box(msg.objects[0].bbox) if msg.objects else np.full(4, np.nan)
                out.ground_truth[stamp_ns(msg.header.stamp)] = box
    except BagError:
        raise
    except Exception as exc:
        raise BagError(f"{path}: reading failed ({exc.__class__.__name__}: {exc})") from None
    finally:
        reader.close()
    if not out.frames:
        raise BagError(f"{path}: topic {img.topic} holds no frames")
    return out
