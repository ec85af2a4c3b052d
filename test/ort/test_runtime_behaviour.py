"""Runtime API behaviour: no torch, providers, bad models, bad frames and boxes, lost logic."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import stark_ros
from stark_ros.core.geometry import BoxProblem, InvalidBoxError
from stark_ros.runtime import (
    LostSettings,
    ModelLoadError,
    RuntimeOptions,
    StarkRuntime,
    TargetState,
    TrackEventType,
)
from stark_ros.tracking import model_metadata as md

CPU_ONLY = RuntimeOptions(providers=("CPUExecutionProvider",), warmup=False)


@pytest.fixture(scope="module")
def st50_dir(exported_model):
    return exported_model("ST50")


@pytest.fixture()
def frame():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(240, 320, 3), dtype=np.uint8)


def test_runtime_never_imports_torch(st50_dir, tmp_path):
    code = f"""
import sys, numpy as np
from stark_ros.runtime import StarkRuntime
rt = StarkRuntime({str(st50_dir)!r})
rt.add_target(np.zeros((120, 160, 3), np.uint8), (40, 40, 30, 30))
rt.update(np.zeros((120, 160, 3), np.uint8))
assert 'torch' not in sys.modules, 'torch was imported'
print('ok', rt.active_providers)
"""
    # Run from a neutral folder, with the package this test imported (installed or source tree) on the path.
    env = {**os.environ, "PYTHONPATH": str(Path(stark_ros.__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout and "CPUExecutionProvider" in done.stdout
    # Asked for TensorRT/CUDA by default; without them we say so once, clearly.
    assert "running STARK on the CPU" in done.stderr


def test_gpu_request_reports_the_provider_really_used(st50_dir):
    rt = StarkRuntime(st50_dir, RuntimeOptions(warmup=False))
    assert "CPUExecutionProvider" in rt.active_providers


def test_missing_corrupt_and_foreign_models(st50_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        StarkRuntime(tmp_path / "nowhere", CPU_ONLY)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / md.TEMPLATE_FILE).write_bytes((st50_dir / md.TEMPLATE_FILE).read_bytes()[:5000])
    (corrupt / md.TRACK_FILE).write_bytes((st50_dir / md.TRACK_FILE).read_bytes())
    with pytest.raises(ModelLoadError, match=r"template.onnx: not a loadable ONNX model"):
        StarkRuntime(corrupt, CPU_ONLY)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for name in (md.TEMPLATE_FILE, md.TRACK_FILE):
        proto = onnx.load(str(st50_dir / name))
        del proto.metadata_props[:]
        onnx.save(proto, str(foreign / name))
    with pytest.raises(ModelLoadError, match="not a stark_ros model: metadata lacks"):
        StarkRuntime(foreign, CPU_ONLY)
    missing = tmp_path / "half"
    missing.mkdir()
    (missing / md.TEMPLATE_FILE).write_bytes((st50_dir / md.TEMPLATE_FILE).read_bytes())
    with pytest.raises(ModelLoadError, match=r"track\.onnx: model file not found"):
        StarkRuntime(missing, CPU_ONLY)


@pytest.mark.parametrize("box, problem", [
    ((np.nan, 1, 10, 10), BoxProblem.NOT_FINITE),
    ((10, 10, 0, 5), BoxProblem.NON_POSITIVE_SIZE),
    ((10, 10, 5, -1), BoxProblem.NON_POSITIVE_SIZE),
    ((400, 10, 20, 20), BoxProblem.OUTSIDE_IMAGE),
    ((-50, -50, 20, 20), BoxProblem.OUTSIDE_IMAGE),
    ((1, 2, 3), BoxProblem.WRONG_SHAPE),
])
def test_bad_boxes_are_refused_and_others_keep_tracking(st50_dir, frame, box, problem):
    rt = StarkRuntime(st50_dir, CPU_ONLY)
    rt.add_target(frame, (100, 80, 40, 40), target_id="good")
    with pytest.raises(InvalidBoxError) as err:
        rt.add_target(frame, box, target_id="bad")
    assert err.value.problem is problem
    assert isinstance(err.value, ValueError)
    (result,) = rt.update(frame)
    assert result.target_id == "good" and rt.target_ids == ["good"]


@pytest.mark.parametrize("bad", [
    np.zeros((240, 320, 3), np.float32), np.zeros((240, 320), np.uint8), np.zeros((240, 320, 4), np.uint8),
    np.zeros((0, 320, 3), np.uint8), "not an image",
])
def test_bad_frames_raise_value_error_and_keep_state(st50_dir, frame, bad):
    rt = StarkRuntime(st50_dir, CPU_ONLY)
    rt.add_target(frame, (100, 80, 40, 40), target_id="a")
    before = rt.box_of("a")
    with pytest.raises(ValueError):
        rt.update(bad)
    np.testing.assert_array_equal(rt.box_of("a"), before)
    assert len(rt.update(frame)) == 1


def test_remove_and_ids(st50_dir, frame):
    rt = StarkRuntime(st50_dir, CPU_ONLY)
    a = rt.add_target(frame, (100, 80, 40, 40))
    b = rt.add_target(frame, (10, 10, 40, 40))
    assert a != b and rt.target_ids == [a, b]
    assert rt.remove_target(a) and not rt.remove_target(a)
    assert [r.target_id for r in rt.update(frame)] == [b]


def test_s50_tracks_without_lost_detection(exported_model, frame, caplog):
    rt = StarkRuntime(exported_model("S50"), CPU_ONLY)
    assert not rt.has_score_head
    assert "lost-target detection is unavailable" in caplog.text
    rt.add_target(frame, (100, 80, 40, 40))
    for _ in range(3):
        (r,) = rt.update(frame)
        assert math.isnan(r.score) and r.state is TargetState.TRACKING and r.event is None


def test_appearance_score_source_replaces_the_score_head(untrained_lite_model, tmp_path, frame):
    """An export that says score_source: appearance scores by colour similarity to the first box:
    the same frame scores 1, a black frame 0, and the target goes LOST there."""
    from stark_ros.export import export_model
    from stark_ros.model import build_model, get_preset
    from stark_ros.tracking.appearance import AppearanceModel

    export_model(build_model(get_preset("LITE")), tmp_path, source_sha256="appearance", score_source="appearance")
    rt = StarkRuntime(tmp_path, CPU_ONLY, LostSettings(lost_threshold=0.3, lost_frames=2, reacquire_threshold=0.5))
    assert rt.has_score_head and rt.uses_appearance_score
    assert not StarkRuntime(untrained_lite_model, CPU_ONLY).uses_appearance_score
    box = (100, 80, 40, 40)
    rt.add_target(frame, box)
    (r,) = rt.update(frame)
    assert r.score == pytest.approx(AppearanceModel(frame, box).similarity(frame, r.box)) and r.score > 0.3
    events = [rt.update(np.zeros_like(frame))[0] for _ in range(2)]
    assert all(e.score < 0.05 for e in events)
    assert events[-1].event is TrackEventType.LOST


def test_combined_score_sources_are_the_studys_combinations(tmp_path, frame):
    """score_source product / min / mean: the policy reports the combination of the head's sigmoid
    and the appearance score that the score study measured under that name, on the same box."""
    from stark_ros.export import export_model
    from stark_ros.model import build_model, get_preset
    from stark_ros.tracking.confidence import CONFIDENCES
    from stark_ros.tracking.settings import SCORE_FROM_APPEARANCE, SCORE_FROM_HEAD, SCORE_FROM_MIN

    export_model(build_model(get_preset("LITE")), tmp_path, source_sha256="combined", score_source=SCORE_FROM_MIN)
    box = (100, 80, 40, 40)
    moved = np.roll(frame, (3, 5), axis=(0, 1))

    def first_update(source):
        rt = StarkRuntime(tmp_path, CPU_ONLY, score_source=source)
        rt.add_target(frame, box)
        (r,) = rt.update(moved)
        return rt, r

    rt, by_model = first_update(None)
    assert rt.settings.score_source == SCORE_FROM_MIN and rt.uses_appearance_score
    _, head = first_update(SCORE_FROM_HEAD)
    _, appearance = first_update(SCORE_FROM_APPEARANCE)
    np.testing.assert_array_equal(head.box, appearance.box)
    assert 0 < head.score < 1 and 0 < appearance.score <= 1 and head.score != pytest.approx(appearance.score)
    assert by_model.score == pytest.approx(min(head.score, appearance.score))
    for source, combine in CONFIDENCES.items():
        _, r = first_update(source)
        np.testing.assert_array_equal(r.box, head.box)
        assert r.score == pytest.approx(combine(head.score, appearance.score)), source


def test_lost_and_reacquired_follow_the_thresholds(st50_dir, frame):
    # With the reference weights scores sit near 0.5: thresholds around that make both transitions
    # happen on the same frames, which checks the wiring between the runtime and the monitor.
    rt = StarkRuntime(st50_dir, CPU_ONLY, LostSettings(lost_threshold=0.99, lost_frames=2, reacquire_threshold=0.995))
    rt.add_target(frame, (100, 80, 40, 40), target_id="x")
    events = [rt.update(frame)[0] for _ in range(3)]
    assert [e.event for e in events] == [None, TrackEventType.LOST, None]
    assert events[-1].state is TargetState.LOST and events[-1].frames_since_confident == 3
    held = events[1].box
    np.testing.assert_array_equal(events[2].box, held)
    rt.set_lost_settings(LostSettings(lost_threshold=0.0, lost_frames=2, reacquire_threshold=0.0, reacquire_frames=1))
    (back,) = rt.update(frame)
    assert back.event is TrackEventType.REACQUIRED and back.state is TargetState.TRACKING


def test_the_model_brings_its_own_lost_thresholds(untrained_lite_model, tmp_path, caplog):
    """Thresholds written by the score study into the metadata are the runtime's defaults; a caller's
    settings override them; a model without them says it has none."""
    import shutil

    from stark_ros.export.metadata import write_lost_settings

    with caplog.at_level("WARNING", logger="stark_ros.runtime.tracker"):
        plain = StarkRuntime(untrained_lite_model, CPU_ONLY)
    assert plain.lost_settings == LostSettings() and plain.info.lost is None
    assert "no tuned lost-target thresholds" in caplog.text
    for name in (md.TEMPLATE_FILE, md.TRACK_FILE):
        shutil.copy(untrained_lite_model / name, tmp_path / name)
    tuned = LostSettings(lost_threshold=0.42, lost_frames=7, reacquire_threshold=0.61, reacquire_frames=4)
    write_lost_settings(tmp_path, tuned, "a test", score_source="appearance")
    rt = StarkRuntime(tmp_path, CPU_ONLY)
    assert rt.lost_settings == tuned and rt.info.lost_source == "a test" and rt.uses_appearance_score
    mine = LostSettings(lost_threshold=0.1, reacquire_threshold=0.2)
    assert StarkRuntime(tmp_path, CPU_ONLY, mine).lost_settings == mine


@pytest.mark.parametrize("graph", [md.TEMPLATE_FILE, md.TRACK_FILE])
def test_the_warm_up_refuses_a_graph_with_nan_weights_and_names_it(untrained_lite_model, tmp_path, graph):
    """Such a model loads and runs, then would report a fixed box as TRACKING: the warm-up (through the
    engine's public calls) refuses it, naming the graph whose outputs are not finite."""
    from onnx import numpy_helper

    for name in (md.TEMPLATE_FILE, md.TRACK_FILE):
        model = onnx.load(str(untrained_lite_model / name))
        if name == graph:
            for init in model.graph.initializer:
                weights = numpy_helper.to_array(init)
                if weights.dtype.kind == "f" and weights.size > 1:
                    init.CopyFrom(numpy_helper.from_array(np.full_like(weights, np.nan), init.name))
        onnx.save(model, str(tmp_path / name))
    options = RuntimeOptions(providers=("CPUExecutionProvider",))
    with pytest.raises(ModelLoadError, match=rf"{graph}: non-finite"):
        StarkRuntime(tmp_path, options)
    StarkRuntime(untrained_lite_model, options)   # the same check passes a sound model
