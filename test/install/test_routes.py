"""Installed files found one way (stark_ros.core.locate) on each install route, each route with one
installer, and the runtime environment without torch.

- the environment the tests run in (the ament_cmake install of `make setup`, or of `colcon build`
  under `colcon test`): the ament index answers;
- a pip install (`pip install --prefix`): no ament index, the distribution's own file list answers;
- a colcon overlay (`colcon build` of the package, then its `local_setup.sh` sourced on top of
  this environment): the overlay's install answers, not the environment underneath; and
  `colcon test` on it runs a group of the suite that `colcon test-result` then reports.

The pip and colcon routes build the package from a copy of the source files they need (the
repository's own folder may hold environments and build trees that a build must not pick up)."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytest.importorskip("ament_index_python", reason="the ROS 2 environment is not installed (run `make test`)")
from ament_index_python.packages import get_package_prefix, get_package_share_directory

import stark_ros
from stark_ros.core import locate

REPO = Path(__file__).resolve().parents[2]
# What the package's builds read from the source tree (and nothing else of the repository).
BUILD_INPUTS = ("setup.py", "README.md", "package.xml", "CMakeLists.txt", "pytest.ini", "stark_ros", "launch",
                "config", "msg", "srv", "scripts", "models/default", "training/configs")
# The part of the suite `colcon test` runs here: a quick group, so the check stays short.
COLCON_TEST_GROUP = "core"
BUILD_TIMEOUT_S = 900
PIP_TIMEOUT_S = 300
PROBE_TIMEOUT_S = 120

# Printed by a child Python on the route under test: where each kind of file was found.
PROBE = """
import json
from stark_ros.core import locate
from stark_ros.runtime import default_model_dir
try:
    exe = str(locate.executable())
except locate.NotInstalledError as exc:
    exe = "missing: " + str(exc)
print(json.dumps({"route": locate.route(), "share": str(locate.share_dir()), "config": str(locate.params_file()),
                  "launch": str(locate.launch_file()), "msg": str(locate.msg_dir()),
                  "model": str(default_model_dir()), "executable": exe,
                  "training_configs": str(locate.share_file("training", "configs"))}))
"""


def _copy_sources(dest: Path) -> Path:
    for name in BUILD_INPUTS:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _probe(tmp_path: Path, env: dict, source_first: Path | None = None) -> dict:
    """Run PROBE in a child Python (after sourcing a colcon install's local_setup.sh, if given)."""
    import json

    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    if source_first is not None:
        command = f". {shlex.quote(str(source_first))} && {command}"
    proc = subprocess.run(["bash", "-c", command], env=env, cwd="/", capture_output=True, text=True,
                          timeout=PROBE_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_all_under(found: dict, share: Path) -> None:
    assert found["share"] == str(share)
    for key, rel in (("config", "config/tracker.yaml"), ("launch", "launch/tracker.launch.py"), ("msg", "msg"),
                     ("model", "models/default"), ("training_configs", "training/configs")):
        assert found[key] == str(share / rel), key
        assert Path(found[key]).exists(), key


# ------------------------------------------------------------------ the environment the tests run in
def test_this_environment_answers_from_the_ament_index():
    share = Path(get_package_share_directory("stark_ros"))
    assert locate.route() == "ament index"
    assert locate.share_dir() == share
    assert locate.executable() == Path(get_package_prefix("stark_ros")) / "lib" / "stark_ros" / "tracker_node"
    assert os.access(locate.executable(), os.X_OK)
    assert (locate.msg_dir() / "TrackedObjectArray.msg").is_file()

    # Every tool asks the same module.
    from stark_ros.bag.io import msg_dir
    from stark_ros.client.process import installed_params_file, tracker_executable
    from stark_ros.runtime import default_model_dir

    assert tracker_executable() == [str(locate.executable())]
    assert installed_params_file() == share / "config" / "tracker.yaml"
    assert msg_dir() == share / "msg"
    if not os.environ.get("STARK_ROS_MODEL"):
        assert default_model_dir() == share / "models" / "default"


def test_one_installer_one_copy():
    """The ament_cmake build installed the package; pip did not install it a second time."""
    site = Path(stark_ros.__file__).resolve().parents[1]
    assert not list(site.glob("stark_ros-*.dist-info")), "a pip install of stark_ros sits beside the CMake one"
    prefix = Path(get_package_prefix("stark_ros"))
    assert not (prefix / "bin" / "tracker_node").exists(), "a second tracker_node (pip's console script)"
    # The Python modules and the generated interfaces are one package, in the ament prefix.
    from stark_ros.msg import TrackedObjectArray

    assert Path(sys.modules[TrackedObjectArray.__module__].__file__).resolve().parents[2] == site
    assert str(site).startswith(str(prefix.resolve()))


def test_installed_modules_are_the_source_tree():
    """What the tests import is what the source says: a stale install means `make setup` was not
    run after an edit (under `colcon test`: `colcon build`)."""
    installed = Path(stark_ros.__file__).resolve().parent
    source = REPO / "stark_ros"
    stale = [str(p.relative_to(source)) for p in sorted(source.rglob("*.py"))
             if not (installed / p.relative_to(source)).is_file()
             or (installed / p.relative_to(source)).read_bytes() != p.read_bytes()]
    assert not stale, f"the installed package differs from the source in {stale}: run `make setup`"


def test_runtime_purpose_needs_no_torch():
    """The runtime environment (make demo) installs no torch, and the node, the demo, the evaluation
    and bag replay import without it."""
    import runpy

    requirements = runpy.run_path(str(REPO / "setup.py"), run_name="stark_ros_requirements")["requirements"]
    runtime = requirements("runtime")
    assert not [r for r in runtime if re.match(r"(torch|onnx|onnxscript|tensorboard)\b", r)], runtime
    assert [r for r in requirements("full") if r.startswith("torch==")], "the full environment pins torch"
    blocked = ("import sys\nsys.modules['torch'] = None  # import torch now raises ImportError\n"
               "import stark_ros.node.tracker_node, stark_ros.demo, stark_ros.evaluate, stark_ros.bag.replay\n"
               "from stark_ros.runtime import StarkRuntime, default_model_dir\n"
               "StarkRuntime(default_model_dir())\n"
               "print('torch-free')\n")
    proc = subprocess.run([sys.executable, "-c", blocked], cwd="/", capture_output=True, text=True,
                          timeout=PROBE_TIMEOUT_S)
    assert proc.returncode == 0 and "torch-free" in proc.stdout, proc.stderr


# ------------------------------------------------------------------ pip
def test_pip_route_finds_its_files_without_the_ament_index(tmp_path):
    pytest.importorskip("setuptools", reason="pip's build backend is not installed")
    src = _copy_sources(tmp_path / "src")
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip first uninstalls the stark_ros of this environment (the
    # ament_cmake install, known to pip by rosidl's egg-info), wherever --prefix points.
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                           "--ignore-installed", "--prefix", str(prefix), str(src)],
                          capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "STARK_ROS_MODEL")}
    env["PYTHONPATH"] = str(purelib)
    found = _probe(tmp_path, env)
    assert found["route"] == "pip install"
    _assert_all_under(found, prefix / "share" / "stark_ros")
    # pip installs no node: it has no interfaces to run with (only the ament_cmake build makes them).
    assert found["executable"].startswith("missing: ") and "ament index" in found["executable"]
    assert not (prefix / "bin" / "tracker_node").exists()


# ------------------------------------------------------------------ colcon overlay
def _colcon() -> str:
    exe = shutil.which("colcon")
    if exe is None:
        pytest.skip("colcon is not installed (the full environment of `make setup` has it)")
    return exe


def test_colcon_overlay_wins_and_colcon_test_reports(tmp_path):
    colcon = _colcon()
    ws = tmp_path / "ws"
    _copy_sources(ws / "src" / "stark_ros")
    shutil.copytree(REPO / "test" / COLCON_TEST_GROUP, ws / "src" / "stark_ros" / "test" / COLCON_TEST_GROUP,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "test" / "conftest.py", ws / "src" / "stark_ros" / "test" / "conftest.py")
    # colcon's CMake build must find this environment's ROS 2 packages and its Python.
    env = {**os.environ, "CMAKE_PREFIX_PATH": os.pathsep.join(filter(None, (sys.prefix, os.environ.get(
        "CMAKE_PREFIX_PATH"))))}
    build = subprocess.run([colcon, "build", "--packages-select", "stark_ros", "--cmake-args",
                            f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release"],
                           cwd=ws, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    install = ws / "install" / "stark_ros"

    found = _probe(tmp_path, env, source_first=ws / "install" / "local_setup.sh")
    assert found["route"] == "ament index"
    _assert_all_under(found, install / "share" / "stark_ros")
    assert found["executable"] == str(install / "lib" / "stark_ros" / "tracker_node")

    test = subprocess.run([colcon, "test", "--packages-select", "stark_ros", "--ctest-args", "-R",
                           f"pytest_{COLCON_TEST_GROUP}$"], cwd=ws, env=env, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S)
    assert test.returncode == 0, test.stdout[-4000:] + test.stderr[-4000:]
    result = subprocess.run([colcon, "test-result", "--all"], cwd=ws, env=env, capture_output=True, text=True,
                            timeout=PROBE_TIMEOUT_S)
    summary = re.search(r"Summary: (\d+) tests, (\d+) errors, (\d+) failures, (\d+) skipped", result.stdout)
    assert summary, result.stdout + result.stderr
    tests, errors, failures, _ = (int(v) for v in summary.groups())
    assert tests > 0 and errors == 0 and failures == 0, result.stdout
    results = ws / "build" / "stark_ros" / "test_results" / "stark_ros"
    # One registered test per group folder: here the one group copied.
    assert sorted(p.name for p in results.glob("*.xunit.xml")) == [f"pytest_{COLCON_TEST_GROUP}.xunit.xml"]
