"""Each benchmark reader on a tiny tree in the real layout (a few images + annotations)."""

import cv2
import numpy as np
import pytest

from stark_ros.datasets import (
    load_dataset,
    load_got10k,
    load_lasot,
    load_otb,
    load_trackingnet,
    load_uav123,
    load_vot,
    polygons_to_boxes,
)

BOXES = np.array([[10, 20, 30, 40], [11, 21, 31, 41], [12, 22, 32, 42]], dtype=float)


def images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        cv2.imwrite(str(folder / n), np.zeros((48, 64, 3), np.uint8))


def boxes_file(path, rows=BOXES, sep=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(sep.join(f"{v:g}" for v in r) for r in rows) + "\n")


def test_otb_with_two_targets_and_tabs(tmp_path):
    images(tmp_path / "Jogging" / "img", ["0001.jpg", "0002.jpg", "0003.jpg"])
    boxes_file(tmp_path / "Jogging" / "groundtruth_rect.1.txt", sep="\t")
    boxes_file(tmp_path / "Jogging" / "groundtruth_rect.2.txt", rows=BOXES + 1)
    seqs = load_otb(tmp_path)
    assert [s.name for s in seqs] == ["Jogging.1", "Jogging.2"]
    np.testing.assert_array_equal(seqs[0].boxes, BOXES)
    assert seqs[1].frame(2).shape == (48, 64, 3)


def test_lasot_and_split_file(tmp_path):
    for name in ("cat-1", "cat-2"):
        images(tmp_path / "cat" / name / "img", ["00000001.jpg", "00000002.jpg", "00000003.jpg"])
        boxes_file(tmp_path / "cat" / name / "groundtruth.txt")
    (tmp_path / "test.txt").write_text("cat-2\n")
    assert [s.name for s in load_lasot(tmp_path)] == ["cat-1", "cat-2"]
    assert [s.name for s in load_lasot(tmp_path, split_file=tmp_path / "test.txt")] == ["cat-2"]


def test_got10k_val_and_first_frame_only_annotations(tmp_path):
    images(tmp_path / "val" / "GOT-10k_Val_000001", ["00000001.jpg", "00000002.jpg", "00000003.jpg"])
    boxes_file(tmp_path / "val" / "GOT-10k_Val_000001" / "groundtruth.txt", rows=BOXES[:1])
    (tmp_path / "val" / "list.txt").write_text("GOT-10k_Val_000001\n")
    (seq,) = load_got10k(tmp_path, "val")
    assert len(seq) == 3 and np.isnan(seq.boxes[1:]).all()


def test_trackingnet_numeric_frame_order(tmp_path):
    images(tmp_path / "TEST" / "frames" / "abc", [f"{i}.jpg" for i in range(11)])
    boxes_file(tmp_path / "TEST" / "anno" / "abc.txt", rows=np.repeat(BOXES[:1], 11, axis=0))
    (seq,) = load_trackingnet(tmp_path)
    assert [p.name for p in seq.frames[:3]] == ["0.jpg", "1.jpg", "2.jpg"] and seq.frames[-1].name == "10.jpg"


def test_vot_polygons_become_min_max_boxes(tmp_path):
    images(tmp_path / "bag" / "color", ["00000001.jpg", "00000002.jpg"])
    (tmp_path / "bag" / "groundtruth.txt").write_text("10,20,40,20,40,60,10,60\n5,5,15,25\n")
    (seq,) = load_vot(tmp_path)
    np.testing.assert_allclose(seq.boxes, [[10, 20, 30, 40], [5, 5, 15, 25]])
    np.testing.assert_allclose(polygons_to_boxes(np.array([[0, 0, 4, 1, 3, 5, -1, 2]])), [[-1, 0, 5, 5]])


def test_uav123_layout(tmp_path):
    images(tmp_path / "data_seq" / "UAV123" / "car1", ["000001.jpg", "000002.jpg", "000003.jpg"])
    boxes_file(tmp_path / "anno" / "UAV123" / "car1.txt")
    boxes_file(tmp_path / "anno" / "UAV123" / "bird1_1.txt")  # a part without its own folder: skipped
    assert [s.name for s in load_uav123(tmp_path)] == ["car1"]


def test_simple_layout_on_the_shared_sequences(shared):
    seqs = load_dataset("simple", shared / "data" / "sot")
    assert len(seqs) == 7 and all(len(s) == len(s.boxes) for s in seqs)


def test_bad_layouts_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_otb(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown dataset layout"):
        load_dataset("kitti", tmp_path)
    (tmp_path / "v" / "s").mkdir(parents=True)
    (tmp_path / "v" / "s" / "groundtruth.txt").write_text("1,2,3\n")
    images(tmp_path / "v" / "s", ["00000001.jpg"])
    with pytest.raises(ValueError, match="expected 4 or 8 values"):
        load_vot(tmp_path / "v")


def test_target_centred_cuts_are_pasted_back_where_they_came_from(shared):
    """shared/data/train stores cuts around the target; the cuts reader puts each back into one
    whole-frame canvas per video: the box moves with the target, and the canvas under the box
    shows the cut's own pixels there."""
    from stark_ros.datasets import read_frame_rgb
    from stark_ros.datasets.cuts import load_cut_sequence

    seq = load_cut_sequence(shared / "data" / "train" / "uav_car10")
    assert len(seq.boxes) == len(seq.frames) and seq.canvas_scale > 0
    width, height = seq.canvas_size
    # The stored boxes all sit near their cut's centre; back in the frame the car drives across it.
    centres = seq.boxes[:, :2] + seq.boxes[:, 2:] / 2
    assert np.ptp(centres[:, 0]) > 0.2 * width or np.ptp(centres[:, 1]) > 0.2 * height
    i = len(seq) // 2
    frame = seq.frame(i)
    assert frame.shape == (height, width, 3)
    cut = read_frame_rgb(seq.frames[i])
    stored = np.loadtxt(shared / "data" / "train" / "uav_car10" / "groundtruth.txt", delimiter=",")[i]
    x, y, w, h = (round(v) for v in seq.boxes[i])
    sx, sy = (round(v) for v in stored[:2])
    if abs(seq.offsets[i, 2] - seq.canvas_scale) < 1e-6:  # same scale: pixel for pixel
        np.testing.assert_allclose(frame[y:y + h, x:x + w].mean(), cut[sy:sy + h, sx:sx + w].mean(), atol=3)
