"""``python -m stark_ros.bench image_qos``: how many raw camera frames reach a subscriber, by QoS.

What chose the node's default image QoS (README "Image QoS"). A publisher in its own process sends
``--frames`` rgb8 ``sensor_msgs/Image`` at ``--rate`` (640x480 and 1280x720 by default) the way a
camera driver or ``ros2 bag play`` does: Fast DDS's default settings, no XML profile, with either
rclpy's default publisher QoS (reliable, depth 10) or the sensor-data QoS (best effort, depth 5). A
subscriber in another process counts the frames it receives, with each subscription QoS in turn
(best effort / reliable / best available, by depth), without any profile and with the package's
large-image profile (``config/fastdds_large_images.xml``) on both sides. Every combination runs in
this one invocation, one after the other, each on its own DDS domain; the table gives frames
received of frames sent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from stark_ros.client.process import PROFILE_ENV, transport_profile

DEFAULT_SIZES = ("640x480", "1280x720")
DEFAULT_FRAMES = 90
DEFAULT_RATE_HZ = 30.0
BYTES_PER_RGB_PIXEL = 3
# rclpy's create_publisher(..., 10) and qos_profile_sensor_data's depth.
RELIABLE_PUBLISHER_DEPTH = 10
SENSOR_DATA_DEPTH = 5
# After the publisher sees the subscription, both sides need a moment to match completely.
DISCOVERY_SETTLE_S = 1.0
# A reliable subscription never matches a best-effort publisher: give up waiting after this.
MATCH_TIMEOUT_S = 10.0
# Reliable retransmissions of the last frames still arrive after the last publish.
LINGER_S = 1.5
CHILD_TIMEOUT_S = 120.0
SPIN_POLL_S = 0.1
DOMAIN_BASE = 200
DOMAIN_SPAN = 30
TOPIC = "image_qos_probe"


@dataclass(frozen=True)
class Endpoint:
    """One side's QoS: reliability (best_effort, reliable, best_available) and history depth."""
    reliability: str
    depth: int

    def __str__(self) -> str:
        return f"{self.reliability} d{self.depth}"

    def profile(self):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        return QoSProfile(depth=self.depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy[self.reliability.upper()])


PUBLISHERS = (Endpoint("reliable", RELIABLE_PUBLISHER_DEPTH), Endpoint("best_effort", SENSOR_DATA_DEPTH))
SUBSCRIPTIONS = (Endpoint("best_effort", SENSOR_DATA_DEPTH), Endpoint("best_effort", 1),
                 Endpoint("reliable", SENSOR_DATA_DEPTH), Endpoint("reliable", 1),
                 Endpoint("best_available", SENSOR_DATA_DEPTH))


def _parse_endpoint(text: str) -> Endpoint:
    reliability, depth = text.split(":")
    return Endpoint(reliability, int(depth))


def _publish(width: int, height: int, frames: int, rate: float, qos: Endpoint) -> int:
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("image_qos_publisher")
    pub = node.create_publisher(Image, TOPIC, qos.profile())
    msg = Image(height=height, width=width, encoding="rgb8", step=width * BYTES_PER_RGB_PIXEL)
    msg.data = bytes(width * height * BYTES_PER_RGB_PIXEL)
    deadline = time.monotonic() + MATCH_TIMEOUT_S
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(DISCOVERY_SETTLE_S)
    period = 1.0 / rate
    start = time.monotonic()
    for i in range(frames):
        msg.header.frame_id = str(i)
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        time.sleep(max(0.0, start + (i + 1) * period - time.monotonic()))
    time.sleep(LINGER_S)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def _subscribe(qos: Endpoint) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    received = set()
    rclpy.init()
    node = rclpy.create_node("image_qos_subscriber")
    sub = node.create_subscription(Image, TOPIC, lambda m: received.add(m.header.frame_id), qos.profile())
    # What the subscription really got: best_available is resolved once, at creation, against the
    # publishers present then.
    ours = [e for e in node.get_subscriptions_info_by_topic(TOPIC) if e.node_name == node.get_name()]
    effective = ours[0].qos_profile.reliability.name.lower() if ours else sub.qos_profile.reliability.name.lower()
    # Told to stop on stdin (a signal can land before rclpy's handler is in place).
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    while not stop.is_set():
        executor.spin_once(timeout_sec=SPIN_POLL_S)
    print(json.dumps({"received": len(received), "effective": effective}), flush=True)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    return 0


def _child_env(domain: int, profile: str | None) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.pop(PROFILE_ENV, None)
    if profile:
        env[PROFILE_ENV] = profile
    return env


def run_once(size: tuple[int, int], pub: Endpoint, sub: Endpoint, profile: str | None, frames: int, rate: float,
             domain: int) -> dict:
    """Frames received of ``frames`` sent, for one publisher/subscription pair (each its own process)."""
    me = [sys.executable, "-m", "stark_ros.bench.image_qos"]
    env = _child_env(domain, profile)
    subscriber = subprocess.Popen([*me, "--child-sub", f"{sub.reliability}:{sub.depth}"], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        subscriber.stdout.readline()  # "ready": the subscription exists
        publisher = subprocess.run([*me, "--child-pub", f"{pub.reliability}:{pub.depth}", "--size",
                                    f"{size[0]}x{size[1]}", "--frames", str(frames), "--rate", str(rate)],
                                   env=env, timeout=CHILD_TIMEOUT_S)
        out, _ = subscriber.communicate("stop\n", timeout=CHILD_TIMEOUT_S)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait()
    result = json.loads(out.strip().splitlines()[-1])
    result["publisher_rc"] = publisher.returncode
    return result


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stark_ros.bench image_qos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="WIDTHxHEIGHT of the rgb8 frames")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames sent per combination")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE_HZ, help="frames/s sent")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--child-pub", type=_parse_endpoint, help=argparse.SUPPRESS)
    parser.add_argument("--child-sub", type=_parse_endpoint, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=_size, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_pub:
        return _publish(*args.size, args.frames, args.rate, args.child_pub)
    if args.child_sub:
        return _subscribe(args.child_sub)

    profile = transport_profile()
    profiles = [("none", None)] + ([("large-image profile, both sides", str(profile))] if profile else [])
    rows = []
    domain = DOMAIN_BASE + os.getpid() % DOMAIN_SPAN
    print(f"image_qos: {args.frames} rgb8 frames at {args.rate:g} Hz per row; publisher on Fast DDS defaults "
          f"unless a profile is named")
    print(f"{'size':>9}  {'publisher':<15} {'subscription':<18} {'profile':<32} received")
    for size_text in args.sizes:
        size = _size(size_text)
        for profile_name, profile_path in profiles:
            for pub in PUBLISHERS:
                for sub in SUBSCRIPTIONS:
                    result = run_once(size, pub, sub, profile_path, args.frames, args.rate, domain)
                    sub_text = str(sub) + (f" ({result['effective']})" if sub.reliability == "best_available"
                                           else "")
                    print(f"{size_text:>9}  {pub!s:<15} {sub_text:<18} {profile_name:<32} "
                          f"{result['received']:>3}/{args.frames}", flush=True)
                    rows.append({"size": size_text, "publisher": str(pub), "subscription": str(sub),
                                 "effective": result["effective"], "profile": profile_name,
                                 "received": result["received"], "sent": args.frames})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
