"""Frames that never reach the node, without ROS: DDS reports the ones it lost (the image
subscription's ``message_lost`` event); they are counted on /diagnostics and said in a throttled
warning naming the usual cause. Raw frames above Fast DDS's default shared-memory segment go over
UDP fragments, and a best-effort frame is lost with any fragment, unless the *publisher* uses the
large-image profile (measured: 720p frames all lost without it on the camera's side, whether or not
the node had it; all arrived with it on both).
"""

from __future__ import annotations

from stark_ros.node.log_throttle import suffix
from stark_ros.node.telemetry import LOST_IN_TRANSPORT, Telemetry

BYTES_PER_KB = 1 << 10
FASTDDS_DEFAULT_SEGMENT_BYTES = 512 * BYTES_PER_KB
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
LARGE_FRAMES_HINT = (f"raw frames above Fast DDS's default {FASTDDS_DEFAULT_SEGMENT_BYTES // BYTES_PER_KB} KB "
                     "shared-memory segment are lost in transport unless the camera and the node use "
                     "config/fastdds_large_images.xml (the launch file gives it to the node; set "
                     f"{PROFILE_ENV} for the camera driver)")


class TransportWatch:
    def __init__(self, telemetry: Telemetry, environ):
        self._telemetry = telemetry
        # Warned once: large raw frames arrive and no transport profile is set (e.g. `ros2 run`).
        self._large_frames_unwarned = not environ.get(PROFILE_ENV)

    def frame_arrived(self, nbytes: int) -> str | None:
        """The one warning about large frames without a profile, or None."""
        if not self._large_frames_unwarned or nbytes <= FASTDDS_DEFAULT_SEGMENT_BYTES:
            return None
        self._large_frames_unwarned = False
        return (f"frames of {nbytes // BYTES_PER_KB} KB arrive and no {PROFILE_ENV} is set: {LARGE_FRAMES_HINT}; "
                f"frames lost so far are counted as frames_lost_in_transport")

    def frames_lost(self, count: int, total: int) -> str | None:
        """Count ``count`` frames DDS lost; the warning to log now, or None (throttled)."""
        unlogged = self._telemetry.skips.record(LOST_IN_TRANSPORT, count)
        if unlogged is None:
            return None
        return (f"{count} frame(s) lost in transport before reaching the node ({total} in all)"
                f"{suffix(unlogged)}: {LARGE_FRAMES_HINT}")
