"""Message stamps as integer nanoseconds: the one key by which the node, its clients and the bag
tools name a frame (a ``builtin_interfaces/Time``, or anything with ``sec`` and ``nanosec``).

Any sign is kept: ``rclpy.time.Time.from_msg`` raises on negative seconds, and one bad stamp must
neither stop the node nor lose a client's record of what it sent.
"""

from __future__ import annotations

NS_PER_S = 1_000_000_000


def stamp_ns(stamp) -> int:
    """A stamp (``header.stamp``) as integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def split_ns(ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> (sec, nanosec); divmod keeps nanosec in [0, 1e9) for negative stamps
    too, as a ROS Time message requires."""
    return divmod(int(ns), NS_PER_S)


def set_stamp(header, ns: int) -> None:
    header.stamp.sec, header.stamp.nanosec = split_ns(ns)
