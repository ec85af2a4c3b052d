"""The launch file with the real launch system (skipped where launch_ros is not installed:
the PyPI route has no launch/launch_ros wheels).

The installed launch file is run the way `ros2 launch stark_ros tracker.launch.py ...` runs it: by
`ros2 launch` itself where ros2cli is installed, otherwise by a child Python that includes it in a
`launch.LaunchService` (what `ros2 launch` does underneath). The test then checks over DDS what the
launch arguments must have done to the node: its name and namespace (`tracker` by default), its
parameters (YAML file, then the arguments on top), the remapped image topic and the image transport
that follows it, the log level, the Fast DDS profile in the node's environment; and that SIGINT stops
everything."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

launch_ros = pytest.importorskip(
    "launch_ros", reason="launch_ros is not installed (ROS 2 from PyPI has no launch wheels); on a ROS 2 "
                         "install this test runs the launch file for real")

import yaml  # noqa: E402

from stark_ros.core import locate  # noqa: E402

from .conftest import wait_for  # noqa: E402

PACKAGE_SHARE = locate.share_dir()
LAUNCH_FILE = PACKAGE_SHARE / "launch" / "tracker.launch.py"
INSTALLED_PARAMS = PACKAGE_SHARE / "config" / "tracker.yaml"
NODE_NAME = "stark_tracker"
DEFAULT_NAMESPACE = "/tracker"
DEFAULT_IMAGE_TOPIC = "/image"
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"
INSTALLED_PROFILE = PACKAGE_SHARE / "config" / "fastdds_large_images.xml"
# The launched node logs in this format whatever the person running the tests set: rcutils' default
# puts a timestamp between the severity and the logger name, which a fixed expectation cannot match.
LOG_FORMAT = "[{severity}] [{name}]: {message}"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0

# What `ros2 launch <file> name:=value ...` does, for machines without ros2cli.
LAUNCH_SCRIPT = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
launch_file, arguments = sys.argv[1], sys.argv[2:]
service = LaunchService(argv=arguments)
service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(launch_file),
    launch_arguments=[tuple(a.split(":=", 1)) for a in arguments])]))
sys.exit(service.run())
"""


def _ros2_launch_available() -> bool:
    if shutil.which("ros2") is None:
        return False
    return subprocess.run(["ros2", "launch", "--help"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=60).returncode == 0


class Launched:
    """The installed tracker.launch.py running in its own process group, output in a log file."""

    def __init__(self, tmp_path: Path, env: dict | None = None, **arguments):
        args = [f"{key}:={value}" for key, value in arguments.items()]
        if _ros2_launch_available():
            cmd = ["ros2", "launch", "stark_ros", LAUNCH_FILE.name, *args]
        else:
            cmd = [sys.executable, "-c", LAUNCH_SCRIPT, str(LAUNCH_FILE), *args]
        env = {**os.environ, "ROS_LOG_DIR": str(tmp_path / "ros_log"), "PYTHONUNBUFFERED": "1",
               "RCUTILS_CONSOLE_OUTPUT_FORMAT": LOG_FORMAT, "RCUTILS_COLORIZED_OUTPUT": "0", **(env or {})}
        self.log_path = tmp_path / f"launch_{len(list(tmp_path.glob('launch_*.log')))}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text()

    def node_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"process started with pid \[(\d+)\]", self.log())]

    def node_environment(self) -> dict:
        """The launched node's environment, as its process was started with it."""
        pids = wait_for(self.node_pids, START_TIMEOUT_S, "the node's process")
        raw = Path(f"/proc/{pids[0]}/environ").read_bytes()
        return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)

    def stop(self) -> int:
        """SIGINT (Ctrl-C) to the launch process, which stops the node; SIGKILL to the group if not."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture()
def launched(ros_context, tmp_path):
    """launch(env=None, **arguments) -> (Launched, probe node); both stopped after the test, the node checked gone."""
    import rclpy

    started = []
    probe = rclpy.create_node("launch_probe", context=ros_context)

    def launch(env=None, **arguments):
        started.append(Launched(tmp_path, env=env, **arguments))
        return started[-1], probe

    yield launch
    probe.destroy_node()
    stopped = [(run, run.node_pids(), run.stop()) for run in started]  # every one stopped before any check
    for run, pids, returncode in stopped:
        assert returncode == 0, f"the launch did not stop cleanly on SIGINT; its log:\n{run.log()}"
        assert pids, f"the launch started no process; its log:\n{run.log()}"
        assert not any(_alive(pid) for pid in pids), f"node processes {pids} left running"


def _get_parameters(probe, namespace: str, names: list[str], run: Launched) -> dict:
    import rclpy
    from rcl_interfaces.srv import GetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import parameter_value_to_python

    cli = probe.create_client(GetParameters, f"{namespace}/{NODE_NAME}/get_parameters")
    try:
        # Fails at once where the node (or the launch) died instead of waiting out the timeout.
        def up_or_dead():
            return cli.service_is_ready() or run.proc.poll() is not None or "process has died" in run.log()
        wait_for(up_or_dead, START_TIMEOUT_S, "", poll=0.1, raise_on_timeout=False)
        if not cli.service_is_ready():
            raise AssertionError(f"the launched node did not come up; the launch log:\n{run.log()}")
        future = cli.call_async(GetParameters.Request(names=names))
        # The probe lives in the ROS tests' own context: spin it with an executor of that context.
        executor = SingleThreadedExecutor(context=probe.context)
        wait_for(lambda: rclpy.spin_once(probe, timeout_sec=0.1, executor=executor) or future.done(), 30,
                 "the parameters")
        executor.shutdown()
        values = [parameter_value_to_python(v) for v in future.result().values]
    finally:
        probe.destroy_client(cli)
    assert len(values) == len(names), f"parameters not set on the node: {names}"
    return {name: (v if isinstance(v, (bool, int, float, str)) else list(v))
            for name, v in zip(names, values, strict=True)}


def _wait_subscribed(probe, topic: str, namespace: str, run: Launched) -> str:
    """The type the launched node subscribes to `topic` with (waits until it does)."""
    def ours():
        return [e for e in probe.get_subscriptions_info_by_topic(topic)
                if e.node_name == NODE_NAME and e.node_namespace == namespace]
    endpoints = wait_for(ours, START_TIMEOUT_S, f"the node to subscribe to {topic}", raise_on_timeout=False)
    assert endpoints, f"the launched node does not subscribe to {topic}; the launch log:\n{run.log()}"
    return endpoints[0].topic_type


def _yaml_parameters(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["/**"]["ros__parameters"]


def test_launch_file_defaults_namespace_image_and_profile(launched, untrained_lite_model):
    """Without arguments the node lives in the namespace `tracker`, reads /image, and runs with the
    installed large-image profile."""
    assert LAUNCH_FILE.is_file()
    run, probe = launched(model=untrained_lite_model, env={PROFILE_ENV: ""})
    assert _wait_subscribed(probe, DEFAULT_IMAGE_TOPIC, DEFAULT_NAMESPACE, run) == "sensor_msgs/msg/Image"
    for topic in ("tracks", "events", "overlay"):
        assert wait_for(lambda t=topic: probe.count_publishers(f"{DEFAULT_NAMESPACE}/{t}"), START_TIMEOUT_S,
                        f"{DEFAULT_NAMESPACE}/{topic}")
    assert probe.count_publishers("/tracks") == 0
    assert run.node_environment().get(PROFILE_ENV) == str(INSTALLED_PROFILE)


def test_launch_file_defaults_yaml_model_namespace_and_image_remap(launched, untrained_lite_model):
    run, probe = launched(model=untrained_lite_model, namespace="launched", image="/launch_test/camera/image_raw")

    expected = _yaml_parameters(INSTALLED_PARAMS)
    params = _get_parameters(probe, "/launched", [*expected, "use_sim_time"], run)
    assert params.pop("use_sim_time") is False
    assert params.pop("model") == str(untrained_lite_model)
    expected.pop("model")
    assert params == expected

    # `image` remaps the node's `image` subscription; its other topics stay in its namespace.
    assert _wait_subscribed(probe, "/launch_test/camera/image_raw", "/launched", run) == "sensor_msgs/msg/Image"
    assert _wait_subscribed(probe, "/launched/target", "/launched", run) == "stark_ros/msg/TargetRequest"
    assert probe.count_subscribers("/launched/image") == 0
    assert wait_for(lambda: probe.count_publishers("/launched/tracks"), START_TIMEOUT_S, "/launched/tracks")
    # log_level defaults to info.
    wait_for(lambda: "active: tracking on '/launch_test/camera/image_raw'" in run.log(), START_TIMEOUT_S,
             "the node's INFO line")


def test_launch_file_params_file_image_transport_sim_time_log_level(launched, untrained_lite_model, tmp_path):
    custom = _yaml_parameters(INSTALLED_PARAMS)
    custom.update(model="/no/such/model", frame_buffer_size=12, max_targets=5, queue_size=3, intra_op_threads=1,
                  lost_frames=7, image_transport="raw")
    params_file = tmp_path / "custom.yaml"
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": custom}}))

    run, probe = launched(params_file=params_file, model=untrained_lite_model, namespace="launched_custom",
                          image="/launch_test/cam_custom", image_transport="compressed", use_sim_time="true",
                          log_level="warn")

    params = _get_parameters(probe, "/launched_custom", [*custom, "use_sim_time"], run)
    # The YAML file's values, then the launch arguments on top of them.
    assert params == {**custom, "model": str(untrained_lite_model), "image_transport": "compressed",
                      "use_sim_time": True}

    # image_transport's convention: the compressed topic follows the remapped base topic.
    assert (_wait_subscribed(probe, "/launch_test/cam_custom/compressed", "/launched_custom", run)
            == "sensor_msgs/msg/CompressedImage")
    assert probe.count_subscribers("/launch_test/cam_custom") == 0
    assert probe.count_subscribers("/launched_custom/image/compressed") == 0
    assert wait_for(lambda: probe.count_publishers("/launched_custom/tracks"), START_TIMEOUT_S,
                    "/launched_custom/tracks")
    # log_level:=warn: none of the node's INFO lines in the whole output (launch's own lines remain).
    assert run.stop() == 0
    assert "process has finished cleanly" in run.log()
    assert "active: tracking on" not in run.log()


def test_launch_transport_profile_choices(launched, untrained_lite_model, tmp_path):
    """A profile set in the environment wins over the default; a path given for this launch wins over
    the environment; `none` takes Fast DDS's defaults even where the environment names a profile."""
    from_shell = tmp_path / "shell_profile.xml"
    typed = tmp_path / "typed_profile.xml"
    for path in (from_shell, typed):
        path.write_text(INSTALLED_PROFILE.read_text())
    env = {PROFILE_ENV: str(from_shell)}
    runs = {choice: launched(env=env, model=untrained_lite_model, namespace=f"profile_{name}",
                             **({"transport_profile": choice} if choice else {}))[0]
            for name, choice in (("default", None), ("typed", str(typed)), ("none", "none"))}
    assert runs[None].node_environment().get(PROFILE_ENV) == str(from_shell)
    assert runs[str(typed)].node_environment().get(PROFILE_ENV) == str(typed)
    assert PROFILE_ENV not in runs["none"].node_environment()


def test_launch_log_level_applies_to_the_node_only(launched, untrained_lite_model):
    """log_level:=debug shows the node's debug lines, not rcl's (which printed 20,000 lines in 13 s).
    Every launch here logs in LOG_FORMAT (set by Launched), so the lines match whatever
    RCUTILS_CONSOLE_OUTPUT_FORMAT the person running the tests has."""
    run, probe = launched(model=untrained_lite_model, namespace="launched_debug", log_level="debug")
    assert wait_for(lambda: probe.count_publishers("/launched_debug/tracks"), START_TIMEOUT_S,
                    "/launched_debug/tracks")
    wait_for(lambda: "active: tracking on" in run.log(), START_TIMEOUT_S, "the node's INFO line")
    log = run.log()
    assert run.node_environment()["RCUTILS_CONSOLE_OUTPUT_FORMAT"] == LOG_FORMAT
    assert "[DEBUG] [launched_debug.stark_tracker]: parameters:" in log
    # rcl's loggers are named rcl, rcl.*, rcl_lifecycle: any of their debug lines would match.
    assert "[DEBUG] [rcl" not in log
