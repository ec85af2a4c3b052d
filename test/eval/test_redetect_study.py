"""The re-detection study's `elsewhere` absence (stark_ros.evaluation.redetect_study) on a real
validation video: the target is gone for the episode (ground truth NaN) and afterwards both the frame
and the ground truth have moved by the same shift, past the local search region."""

import json

import numpy as np

from stark_ros.datasets.cuts import load_cut_sequence
from stark_ros.evaluation.redetect_study import ELSEWHERE_SHIFT, elsewhere, grid
from stark_ros.tracking.redetect import RedetectSettings

VIDEO = "otb_bolt2"   # a validation video (stark_ros.datasets.splits.TRAIN_VALIDATION)
# The target's pixels at the moved box match the original ones up to the sub-pixel resampling.
MAX_MEAN_DIFFERENCE = 12.0


def test_the_target_comes_back_where_the_frame_moved_it(shared):
    base = load_cut_sequence(shared / "data" / "train" / VIDEO)
    seq = elsewhere(base)
    assert np.all(np.isnan(seq.boxes[seq.first:seq.last + 1]))
    size = float(np.sqrt(np.prod(base.boxes[seq.last + 1, 2:])))
    assert np.hypot(*seq.shift) > 2.5 * size    # past the local search's half side (search factor 5)
    assert np.hypot(*seq.shift) <= ELSEWHERE_SHIFT * size + 1e-6
    i = seq.last + 5
    x, y, w, h = np.round(seq.boxes[i]).astype(int)
    x0, y0 = np.round(base.boxes[i][:2]).astype(int)
    here, there = seq.frame(i)[y:y + h, x:x + w].astype(float), base.frame(i)[y0:y0 + h, x0:x0 + w].astype(float)
    assert here.shape == there.shape and np.abs(here - there).mean() < MAX_MEAN_DIFFERENCE
    # Before the episode the video is untouched.
    np.testing.assert_array_equal(seq.frame(seq.first - 1), base.frame(seq.first - 1))


def test_the_grid_holds_valid_settings_with_re_detection_on():
    assert grid() and all(isinstance(s, RedetectSettings) and s.enabled for s in grid())


def test_a_study_never_reads_back_another_models_results_and_applies_into_its_own_folder(shared, tmp_path):
    """--out may be the model folder itself (the card's command); results left there by another model
    (here: a sentinel row under the right keys) are measured again, and --apply writes the choice."""
    import shutil

    import onnxruntime as ort

    from stark_ros.evaluation.redetect_study import IDENTITY_FILE, grid, main
    from stark_ros.runtime import default_model_dir
    from stark_ros.tracking.model_metadata import KEY_REDETECT_SETTINGS, TRACK_FILE
    from stark_ros.tracking.redetect import NO_REDETECTION

    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model, ignore=shutil.ignore_patterns("*.pth", "*.png"))
    sentinel = {"settings": None, "f_score": -1.0}
    stale = {json.dumps(s.to_dict(), sort_keys=True): sentinel for s in [NO_REDETECTION, *grid()]}
    (model / "redetect_study.json").write_text(json.dumps(stale))
    (model / IDENTITY_FILE).write_text(json.dumps({"source_sha256": "another model"}))
    assert main(["--model", str(model), "--out", str(model), "--sequences", "uav_person11", "--apply"]) == 0
    results = json.loads((model / "redetect_study.json").read_text())
    assert all(row["f_score"] >= 0 for row in results.values())
    meta = ort.InferenceSession(str(model / TRACK_FILE)).get_modelmeta().custom_metadata_map
    assert json.loads(meta[KEY_REDETECT_SETTINGS])["crops_per_frame"] > 0
    # The same model again: its own results are read back, not measured again (a marked row survives).
    marked = {key: {**row, "marked": True} for key, row in results.items()}
    (model / "redetect_study.json").write_text(json.dumps(marked))
    assert main(["--model", str(model), "--out", str(model), "--sequences", "uav_person11"]) == 0
    assert all(row.get("marked") for row in json.loads((model / "redetect_study.json").read_text()).values())
