"""The installed tracker node as a child process: what the demo, bag replay, the node benchmarks and
the ROS tests start, so that they measure the same executable a user runs with ``ros2 run`` / launch."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from stark_ros.core import locate

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# After the node's subscriptions show up, DDS needs a moment until both sides have matched;
# best-effort frames sent before that are lost (and a request stamped on them is rejected).
DISCOVERY_SETTLE_S = 1.0
POLL_S = 0.05
# Domain ids a tool picks for itself: above the ones people configure by hand (0..~100).
PRIVATE_DOMAIN_BASE = 100
PRIVATE_DOMAIN_SPAN = 100
# Where Fast DDS reads an XML profile from: both sides of the traffic need the large-image profile,
# since the publishing side owns the shared-memory segment.
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
TRANSPORT_PROFILE = ("config", "fastdds_large_images.xml")
KB_PER_MB = 1024


class NodeProcessError(RuntimeError):
    """The tracker node could not be found or did not come up."""


def tracker_executable() -> list[str]:
    """The installed node, where ``ros2 run stark_ros tracker_node`` finds it."""
    try:
        return [str(locate.executable())]
    except locate.NotInstalledError as exc:
        raise NodeProcessError(str(exc)) from None


def installed_params_file() -> Path:
    """The installed config/tracker.yaml."""
    try:
        return locate.params_file()
    except locate.NotInstalledError as exc:
        raise NodeProcessError(str(exc)) from None


def use_private_domain() -> None:
    """Keep a tool's traffic off other ROS graphs on the network unless the user chose a domain."""
    os.environ.setdefault("ROS_DOMAIN_ID", str(PRIVATE_DOMAIN_BASE + os.getpid() % PRIVATE_DOMAIN_SPAN))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def transport_profile() -> Path | None:
    """The installed Fast DDS profile for large images (None where it is not installed)."""
    try:
        return locate.share_file(*TRANSPORT_PROFILE)
    except locate.NotInstalledError:
        return None


def use_transport_profile(enabled: bool = True, override: bool = True) -> str:
    """Point this process and the node processes it starts at the large-image profile (or at
    Fast DDS's defaults); ``override=False`` keeps a profile the user set. Must run before any DDS
    participant exists. Returns what is used, in words."""
    if not override and os.environ.get(PROFILE_ENV):
        return os.environ[PROFILE_ENV]
    profile = transport_profile() if enabled else None
    if profile is not None:
        os.environ[PROFILE_ENV] = str(profile)
    else:
        os.environ.pop(PROFILE_ENV, None)
    return str(profile) if profile is not None else "Fast DDS defaults"


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (NaN where it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / KB_PER_MB
    except OSError:
        pass
    return float("nan")


def _param_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class TrackerNodeProcess:
    """``tracker_node --ros-args --params-file ... -p k:=v`` with its output in a log file."""

    def __init__(self, log_path, params: dict | None = None, params_file=None, namespace: str | None = None,
                 node_name: str | None = None):
        self.log_path = Path(log_path)
        self.namespace = (namespace or "").strip("/")
        self.args = [*tracker_executable(), "--ros-args", "--params-file", str(params_file or installed_params_file())]
        if node_name:
            self.args += ["-r", f"__node:={node_name}"]
        if self.namespace:
            self.args += ["-r", f"__ns:=/{self.namespace}"]
        for key, value in (params or {}).items():
            self.args += ["-p", f"{key}:={_param_value(value)}"]
        self._log = None
        self.proc: subprocess.Popen | None = None

    def start(self) -> TrackerNodeProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def __enter__(self) -> TrackerNodeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.is_file() else ""

    def wait_for_subscribers(self, *publishers, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Until the node subscribes to every given publisher's topic, then the DDS settle time (for
        tests that publish on topics of their own, e.g. a remapped image topic)."""
        deadline = time.monotonic() + timeout
        while any(p.get_subscription_count() == 0 for p in publishers):
            if self.proc.poll() is not None:
                raise NodeProcessError(f"the tracker node exited with code {self.proc.returncode}; its log "
                                       f"({self.log_path}):\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise NodeProcessError(f"the tracker node did not subscribe within {timeout:g} s; its log "
                                       f"({self.log_path}):\n{self.log_text()}")
            time.sleep(POLL_S)
        time.sleep(DISCOVERY_SETTLE_S)

    def stop(self) -> int | None:
        """SIGINT (what Ctrl-C sends), SIGKILL after a grace period; the exit code (None: never started)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode if self.proc is not None else None
