"""Every command the README gives (the lines of its ```bash blocks) is run by a test in the set-up
environment: here, through bash from the repository's root as a user types it (the README's example
files replaced by test files, outputs sent to a temporary folder, arguments added that keep it short),
or by the existing test named beside it. The few that need what a bare machine cannot have (a ROS 2
distribution's tools, a GPU, hours) say why and name the tests that run their parts.

A command added to the README, or changed there, fails
:func:`test_every_readme_command_has_its_check` until it gets a row here."""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
COMMAND_TIMEOUT_S = 900
# A README line's comment starts after two spaces (``make demo   # sets up ...``).
COMMENT = re.compile(r"\s{2,}#.*$")
# The short sequences the commands run on (frames of shared/data/sot).
EVAL_SEQUENCE = "uav123_10fps_wakeboard7"   # the shortest one, 67 frames
OTB_SOURCE, OTB_FRAMES = "otb_crossing", 10
DEMO_FRAMES = 12
BENCH_NODE_FRAMES = 20


@dataclass(frozen=True)
class Run:
    """Run here. ``replace``: README text -> the test's ({tmp}, {model}, {shared}, {otb}, {venv} are
    filled in); ``extra``: arguments appended; ``before``: README commands run first in the same
    folder (what this one reads); ``expect``: printed on success."""

    replace: dict = field(default_factory=dict)
    extra: tuple = ()
    before: tuple = ()
    expect: str = ""
    xfail: str = ""


@dataclass(frozen=True)
class ByTest:
    """Run by an existing test (``file::function``)."""

    test: str


@dataclass(frozen=True)
class NotHere:
    """Cannot run on the bare machine; ``parts``: the tests that run what can be run of it."""

    reason: str
    parts: tuple = ()


ROS2_CLI = "the ros2 command line comes with a ROS 2 distribution, not with the PyPI wheels of the bare machine"
COLCON_TEST = "test/install/test_routes.py::test_colcon_overlay_wins_and_colcon_test_reports"
BAG_WRITE = "python -m stark_ros.bag write ../shared/data/sot/otb_crossing out/crossing_bag --rate 15"
DIST_TRAIN = "training/dist_train.sh training/configs/stark_st1_r50_500e_got10k.yaml 8 --cfg-options data.num_workers=8"
OUT = {"out/": "{tmp}/"}
NO_GPU = "needs an NVIDIA GPU and onnxruntime-gpu (scripts/gpu_check.sh ran on an H200; README figures)"

COMMANDS = {
    # `make demo` = set up .venv-runtime, then this step (Makefile); the runtime environment's own
    # checks are test_routes.py::test_runtime_purpose_needs_no_torch.
    "make demo": Run(replace={"make demo": "python -m stark_ros.demo"},
                     extra=("--frames", str(DEMO_FRAMES), "--out", "{tmp}/demo"), expect="AUC"),
    "make test": NotHere("the suite this test belongs to (ruff, then pytest over test/)"),
    "python -c \"from stark_ros.runtime import StarkRuntime, RuntimeOptions, default_model_dir; "
    "print(StarkRuntime(default_model_dir(), RuntimeOptions(precision='fp16')).active_providers)\"": Run(
        expect="CPUExecutionProvider"),
    "python -m stark_ros.bench runtime --providers cuda": NotHere(
        NO_GPU, parts=("test/ort/test_provider_bench.py::test_provider_benchmark_on_the_cpu",)),
    "scripts/gpu_check.sh --data /path/to/sot [--ort /path/to/unpacked/onnxruntime-gpu]": NotHere(
        NO_GPU, parts=("test/ort/test_provider_bench.py::test_provider_benchmark_on_the_cpu",)),
    "scripts/gpu_check.sh --data DIR -- --extra-variants ST50": NotHere(
        NO_GPU, parts=("test/ort/test_provider_bench.py::test_provider_benchmark_on_the_cpu",)),
    "scripts/gpu_check.sh --providers cpu": Run(
        extra=("--", "--precisions", "fp32", "--frames", "2", "--rounds", "1", "--sequences", "otb_crossing"),
        expect="=== checks ==="),
    "ros2 service call /tracker/start_tracking stark_ros/srv/StartTracking \\": NotHere(
        ROS2_CLI, parts=("test/ros/test_tracker_node.py::test_services_start_list_cancel",)),
    '"{target: {bbox: {center: {position: {x: 320.0, y: 240.0}}, size_x: 80.0, size_y: 120.0}, id: car}}"': NotHere(
        "the YAML argument of the `ros2 service call` above",
        parts=("test/ros/test_tracker_node.py::test_services_start_list_cancel",)),
    "python -m stark_ros.evaluate --root ../shared/data/lt": ByTest(
        "test/eval/test_longterm.py::test_evaluate_records_states_and_scores_lt"),
    "python -m stark_ros.bench image_qos": Run(extra=("--sizes", "320x240", "--frames", "3")),
    "cd ~/ros2_ws/src && git clone <this repository> stark_ros": NotHere(
        "a workspace on a ROS 2 machine", parts=(COLCON_TEST,)),
    "cd ~/ros2_ws && rosdep install --from-paths src --ignore-src -y": NotHere(
        "rosdep installs a ROS 2 distribution's apt packages"),
    "colcon build --packages-select stark_ros && source install/setup.bash": ByTest(COLCON_TEST),
    "pip install onnxruntime-gpu": NotHere("the GPU build of ONNX Runtime needs an NVIDIA GPU"),
    "ros2 launch stark_ros tracker.launch.py image:=/camera/image_raw": ByTest(
        "test/ros/test_launch.py::test_launch_file_defaults_yaml_model_namespace_and_image_remap"),
    "colcon test --packages-select stark_ros && colcon test-result --verbose": ByTest(COLCON_TEST),
    "source .venv/bin/stark_ros_env.sh": Run(
        replace={".venv": "{venv}"}, extra=("&&", "python", "-c", "'import rclpy, stark_ros.msg; print(\"ok\")'"),
        expect="ok"),
    "python -m stark_ros.export STARKST_ep0050.pth.tar -o models/st50": ByTest(
        "test/torch/test_export.py::test_export_cli"),
    "python -c \"from stark_ros.runtime import StarkRuntime; print(StarkRuntime('models/st50').active_providers)\"":
        Run(replace={"models/st50": "{model}"}, expect="CPUExecutionProvider"),
    "python training/train.py training/configs/tiny.yaml": ByTest(
        "test/training/test_train.py::test_sigterm_saves_and_a_restart_resumes_exactly"),
    DIST_TRAIN: NotHere(
        "eight GPU processes", parts=(
            "test/training/test_train.py::test_ddp_two_processes_match_each_other_and_one_process_with_the_same_batch",
            "test/training/test_config.py::test_every_config_loads")),
    "python training/train.py training/configs/stark_lite_corr_st1.yaml": NotHere(
        "about an hour on two cores", parts=("test/training/test_config.py::test_every_config_loads",)),
    "python training/train.py training/configs/stark_lite_corr_st2.yaml": NotHere(
        "needs stage 1's checkpoint", parts=("test/training/test_train.py::test_stage2_changes_only_the_score_head",)),
    "python training/train.py training/configs/stark_lite_corr_st2_made.yaml": NotHere(
        "needs the first stage 2's checkpoint and the 2.6 GB feature cache", parts=(
            "test/training/test_feature_cache.py::test_made_absences_join_the_cache_as_same_scene_negatives",
            "test/training/test_config.py::test_every_config_loads")),
    "python -m stark_ros.evaluate": Run(extra=("--sequences", EVAL_SEQUENCE, "--out", "{tmp}/eval", "--no-progress"),
                                        expect="stark_lite_onnx"),
    "python -m stark_ros.evaluate --dataset otb --root ~/data/OTB100 --tracker runtime:models/st50 --tracker baseline":
        Run(replace={"~/data/OTB100": "{otb}", "models/st50": "{model}"},
            extra=("--out", "{tmp}/otb", "--no-progress"), expect="stark_lite_onnx"),
    BAG_WRITE: Run(replace={"../shared": "{shared}", **OUT}, expect="wrote"),
    "python -m stark_ros.bag replay out/crossing_bag --out out/replay": Run(
        replace=OUT, before=(BAG_WRITE,), expect="\"tracked\""),
    "python -m stark_ros.bag replay my_robot.bag --image-topic /camera/image_raw --target-topic /planner/target": Run(
        # A bag recorded elsewhere: here the written one, named by its own topics.
        replace={"my_robot.bag": "{tmp}/crossing_bag", "/camera/image_raw": "/camera/image",
                 "/planner/target": "/target"},
        extra=("--out", "{tmp}/replay_named"), before=(BAG_WRITE,), expect="\"tracked\""),
    "ros2 launch stark_ros tracker.launch.py image:=/camera/image use_sim_time:=true &": ByTest(
        "test/ros/test_launch.py::test_launch_file_params_file_image_transport_sim_time_log_level"),
    "ros2 bag play out/crossing_bag --clock --remap /target:=/tracker/target": NotHere(
        ROS2_CLI, parts=("test/eval/test_bags.py::test_replay_equals_offline_runtime",)),
    "ros2 bag record -o out/tracks /tracker/tracks /tracker/events /tracker/detections": NotHere(
        ROS2_CLI, parts=("test/eval/test_bags.py::test_replay_equals_offline_runtime",)),
    "ros2 topic echo /tracker/events": NotHere(ROS2_CLI, parts=(
        "test/ros/test_faults.py::test_model_with_nan_weights_fails_configure",)),
    "python -m stark_ros.bench runtime": ByTest(
        "test/torch/test_runtime_bench.py::test_runtime_benchmark_reports_both_engines_against_the_matmul_peak"),
    "python -m stark_ros.bench node": Run(
        extra=("--frames", str(BENCH_NODE_FRAMES), "--threads", "1", "--json", "{tmp}/node.json"),
        expect="bare runtime"),
    "python -m stark_ros.bench model": ByTest(
        "test/torch/test_model_bench.py::test_model_benchmark_reports_every_thread_count"),
    # The hook of the training owner (issue 25): short arguments that run both recipes once.
    "python -m stark_ros.bench train": ByTest(
        "test/training/test_bench_train.py::test_readme_bench_train_runs_on_the_installed_configs"),
}


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = (COMMENT.sub("", line).strip() for block in blocks for line in block.splitlines())
    return [line for line in lines if line]


def test_every_readme_command_has_its_check():
    given = readme_commands()
    assert not set(given) - set(COMMANDS), f"README commands without a check here: {sorted(set(given) - set(COMMANDS))}"
    assert not set(COMMANDS) - set(given), f"checks of commands the README no longer gives: " \
                                           f"{sorted(set(COMMANDS) - set(given))}"


@pytest.mark.parametrize("test", sorted({c.test for c in COMMANDS.values() if isinstance(c, ByTest)}
                                        | {t for c in COMMANDS.values() if isinstance(c, NotHere) for t in c.parts}))
def test_the_tests_named_for_commands_exist(test):
    path, name = test.split("::")
    assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), f"{test} is gone: name the test that runs it"


def _fill(text: str, values: dict) -> str:
    return text.format(**values)


def _command_line(command: str, values: dict) -> str:
    check = COMMANDS[command]
    for old, new in check.replace.items():
        command = command.replace(old, _fill(new, values))
    return " ".join([command, *(_fill(arg, values) for arg in check.extra)])


def _run(command: str, values: dict) -> subprocess.CompletedProcess:
    line = _command_line(command, values)
    done = subprocess.run(["bash", "-c", line], cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                          env={**os.environ, "PYTHONSAFEPATH": "1"})
    assert done.returncode == 0, f"{line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def otb_root(shared, tmp_path_factory):
    """The first frames of a shared sequence in the OTB layout (img/ + groundtruth_rect.txt)."""
    src = shared / "data" / "sot" / OTB_SOURCE
    root = tmp_path_factory.mktemp("otb")
    seq = root / "Crossing"
    (seq / "img").mkdir(parents=True)
    for i, image in enumerate(sorted((src / "img").glob("*.jpg"))[:OTB_FRAMES], start=1):
        shutil.copy(image, seq / "img" / f"{i:04d}.jpg")
    boxes = (src / "groundtruth.txt").read_text().splitlines()[:OTB_FRAMES]
    (seq / "groundtruth_rect.txt").write_text("\n".join(boxes) + "\n")
    return root


RUN_HERE = [c for c, check in COMMANDS.items() if isinstance(check, Run)]


@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.xfail(reason=COMMANDS[c].xfail, strict=True))
                                     if COMMANDS[c].xfail else c for c in RUN_HERE])
def test_readme_command_runs(command, tmp_path, shared, untrained_lite_model, otb_root):
    values = {"tmp": tmp_path, "model": untrained_lite_model, "shared": shared, "otb": otb_root,
              "venv": sys.prefix}
    for first in COMMANDS[command].before:
        _run(first, values)
    done = _run(command, values)
    assert COMMANDS[command].expect in done.stdout + done.stderr
