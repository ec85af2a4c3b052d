"""Real rclpy nodes over real DDS: the tracker node runs as its own process (the installed
executable, started the way a user starts it), the test talks to it through the package's client
(stark_ros.client), the one every tool uses."""

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run the tests through `make test`)")
from stark_ros.client.harness import TrackerClient, wait_for  # noqa: E402, F401 (wait_for: for the tests)
from stark_ros.client.process import NodeProcessError, TrackerNodeProcess, use_transport_profile  # noqa: E402

# Both sides of the tests' DDS traffic use the transport profile the launch file applies (large
# raw frames do not fit Fast DDS's default shared-memory segment); set before any participant
# exists, unless the person running the tests chose a profile.
use_transport_profile(override=False)


def start_tracker(tmp_path, name: str, **params) -> TrackerNodeProcess:
    """The installed tracker_node with the installed YAML and -p overrides, named and namespaced
    ``name`` (so that its log and its /diagnostics status say which test it belongs to)."""
    return TrackerNodeProcess(tmp_path / f"{name}.log", params=params, namespace=name, node_name=name).start()


# The ROS tests' own context: other groups (test/install) init and shut down rclpy's default one,
# and a session-wide default context made them fail with "Context.init() must only be called once".
_CONTEXT = rclpy.Context()


@pytest.fixture(scope="session")
def ros_context():
    rclpy.init(context=_CONTEXT)
    yield _CONTEXT
    rclpy.try_shutdown(context=_CONTEXT)


@pytest.fixture()
def tracker(ros_context, tmp_path, untrained_lite_model):
    """factory(name, compressed=False, **params) -> (TrackerNodeProcess, TrackerClient); stopped after the test."""
    started = []

    def start(name: str, compressed: bool = False, model=None, diagnostics: bool = False, **params):
        proc = start_tracker(tmp_path, name, model=str(model or untrained_lite_model),
                             image_transport="compressed" if compressed else "raw", intra_op_threads=1, **params)
        client = TrackerClient(name, compressed=compressed, context=ros_context, name=f"client_{name}",
                               diagnostics=name if diagnostics else None)
        started.append((proc, client))
        try:
            client.wait_connected(proc)
        except NodeProcessError as exc:
            raise AssertionError(f"node did not come up: {exc}") from None
        return proc, client

    yield start
    for proc, client in started:
        client.close()
        proc.stop()
