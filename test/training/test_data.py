"""Training samples: official sampling rules, exact ground truth in the crop, augmentation,
negatives, NaN frames, still images. Real frames from the shared training sequences."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from stark_ros.core.geometry import crop_around
from stark_ros.datasets import Sequence, load_simple_sequence
from stark_ros.datasets.coco import load_coco
from stark_ros.tracking.settings import TrackerSettings
from stark_ros.training.augmentation import visible_fraction
from stark_ros.training.config import Augmentation
from stark_ros.training.data import PairDataset, collate, valid_frames

SETTINGS = TrackerSettings(template_size=64, search_size=128)
NO_AUG = Augmentation(search_center_jitter=0.0, search_scale_jitter=0.0, brightness=0.0, grayscale_prob=0.0,
                      flip_prob=0.0, blur_prob=0.0)


@pytest.fixture(scope="module")
def train_seqs(shared):
    root = shared / "data" / "train"
    return [load_simple_sequence(root / n) for n in ("uav_group2_2", "vot_car1", "uav_bike1")]


def make(seqs, aug=NO_AUG, **kw):
    kw.setdefault("samples_per_epoch", 64)
    kw.setdefault("max_gap", 30)
    kw.setdefault("num_templates", 2)
    return PairDataset([seqs], [1.0], SETTINGS, aug=aug, **kw)


def denorm(img: torch.Tensor) -> np.ndarray:
    mean = np.asarray(SETTINGS.mean).reshape(3, 1, 1)
    std = np.asarray(SETTINGS.std).reshape(3, 1, 1)
    return ((img.numpy() * std + mean) * 255).round().clip(0, 255).astype(np.uint8).transpose(1, 2, 0)


def test_samples_are_a_pure_function_of_seed_epoch_and_index(train_seqs):
    ds = make(train_seqs, aug=Augmentation())
    a, b = ds[5], ds[5]
    assert torch.equal(a["search_image"], b["search_image"])
    assert torch.equal(a["box_xyxy"], b["box_xyxy"])
    ds.set_epoch(1)
    assert not torch.equal(ds[5]["search_image"], a["search_image"])
    with pytest.raises(IndexError):
        ds[64]


def test_unjittered_search_crop_is_centred_on_the_target_and_matches_the_geometry_crop(train_seqs):
    ds = make(train_seqs)
    rng = np.random.default_rng([ds.seed, 0, 3])
    si = ds._pick_sequence(rng)
    _, search = ds._pick_frames(rng, si)
    sample = ds[3]
    seq = ds.sequences[si]
    crop = crop_around(seq.frame(search), seq.boxes[search], SETTINGS.search_factor, SETTINGS.search_size)
    assert np.abs(denorm(sample["search_image"]).astype(int) - crop.patch.astype(int)).max() <= 1
    x1, y1, x2, y2 = sample["box_xyxy"].tolist()
    # The crop is centred on the box (up to the crop origin's rounding to whole pixels).
    assert abs((x1 + x2) / 2 - 0.5) < 1.5 / SETTINGS.search_size * SETTINGS.search_factor
    assert abs((y1 + y2) / 2 - 0.5) < 1.5 / SETTINGS.search_size * SETTINGS.search_factor
    w, h = seq.boxes[search][2:]
    assert (x2 - x1) * (y2 - y1) == pytest.approx(w * h / (np.ceil(np.sqrt(w * h) * 5.0)) ** 2, rel=1e-6)


def test_jittered_crops_keep_the_target_and_its_box_marks_the_target_pixels(train_seqs):
    aug = dataclasses.replace(NO_AUG, search_center_jitter=4.5, search_scale_jitter=0.5)
    ds = make(train_seqs, aug=aug)
    centres = []
    for i in range(24):
        box = ds[i]["box_xyxy"].numpy() * SETTINGS.search_size
        xywh = np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]])
        assert visible_fraction(xywh, SETTINGS.search_size) >= 0.5
        centres.append((box[:2] + box[2:]) / 2)
    # The jitter really moves the target around the crop.
    assert np.std(np.asarray(centres), axis=0).min() > 0.05 * SETTINGS.search_size


def test_flip_mirrors_every_crop_and_the_box_together(train_seqs):
    plain = make(train_seqs)[7]
    flipped = make(train_seqs, aug=dataclasses.replace(NO_AUG, flip_prob=1.0))[7]
    assert torch.equal(flipped["search_image"], plain["search_image"].flip(-1))
    assert torch.equal(flipped["search_mask"], plain["search_mask"].flip(-1))
    for a, b in zip(flipped["template_images"], plain["template_images"], strict=True):
        assert torch.equal(a, b.flip(-1))
    x1, y1, x2, y2 = plain["box_xyxy"].tolist()
    assert flipped["box_xyxy"].tolist() == pytest.approx([1 - x2, y1, 1 - x1, y2], abs=1e-6)


def test_colour_augmentations_change_pixels_not_geometry(train_seqs):
    plain = make(train_seqs)[2]
    aug = dataclasses.replace(NO_AUG, brightness=0.3, color=0.2, grayscale_prob=1.0, blur_prob=1.0)
    strong = make(train_seqs, aug=aug)[2]
    assert torch.equal(plain["box_xyxy"], strong["box_xyxy"])
    img = denorm(strong["search_image"]).astype(int)
    assert not np.array_equal(img, denorm(plain["search_image"]))
    # Grayscale, then one factor per channel: channels are proportional, not equal.
    assert np.abs(img[..., 0] - img[..., 1]).mean() > 0 or np.abs(img[..., 1] - img[..., 2]).mean() > 0


def test_frames_within_max_gap_and_nan_frames_never_used(train_seqs):
    ds = make(train_seqs, max_gap=5)
    nan_seq = next(i for i, s in enumerate(ds.sequences) if s.name == "uav_group2_2")
    nan_frames = set(np.flatnonzero(~np.isfinite(ds.sequences[nan_seq].boxes).all(axis=1)).tolist())
    assert len(nan_frames) == 3
    assert not nan_frames & set(valid_frames(ds.sequences[nan_seq]).tolist())
    for i in range(300):
        rng = np.random.default_rng([1, 2, i])
        templates, search = ds._pick_frames(rng, nan_seq)
        assert all(abs(t - search) <= 5 for t in templates)
        assert not nan_frames & {*templates, search}
        lo, hi = sorted((templates[0], search))
        assert lo <= templates[1] <= hi


def test_negatives_hide_the_target_or_show_another_sequence(train_seqs):
    ds = make(train_seqs, negative_prob=1.0, negative_same_frame_prob=1.0)
    same_frame = 0
    for i in range(16):
        s = ds[i]
        assert s["label"].item() == 0.0
        box = s["box_xyxy"].numpy() * SETTINGS.search_size
        xywh = np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]])
        same_frame += visible_fraction(xywh, SETTINGS.search_size) == 0.0
    assert same_frame >= 8
    mixed = make(train_seqs, negative_prob=0.5)
    labels = collate([mixed[i] for i in range(40)])["label"]
    assert 8 < labels.sum().item() < 32
    assert make(train_seqs)[0]["label"].item() == 1.0


def test_collate_stacks_templates_and_search(train_seqs):
    batch = collate([make(train_seqs)[i] for i in range(3)])
    assert len(batch["template_images"]) == 2
    assert batch["template_images"][0].shape == (3, 3, 64, 64)
    assert batch["search_image"].shape == (3, 3, 128, 128)
    assert batch["search_mask"].shape == (3, 128, 128)
    assert batch["box_xyxy"].shape == (3, 4)


def _write_image(path, size=(120, 160)):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((*size, 3), np.uint8)
    img[40:80, 50:110] = (0, 200, 255)
    cv2.imwrite(str(path), img)


def test_coco_still_images_become_one_frame_sequences(tmp_path):
    _write_image(tmp_path / "images" / "train2017" / "a.jpg")
    _write_image(tmp_path / "images" / "train2017" / "b.jpg")
    ann = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
           "annotations": [{"id": 10, "image_id": 1, "bbox": [50, 40, 60, 40], "iscrowd": 0, "category_id": 3},
                           {"id": 11, "image_id": 2, "bbox": [0, 0, 5, 5], "iscrowd": 1},
                           {"id": 12, "image_id": 2, "bbox": [50, 40, 60, 40], "iscrowd": 0}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps(ann))
    seqs = load_coco(tmp_path)
    assert [s.name for s in seqs] == ["coco_1_10", "coco_2_12"]
    assert seqs[0].boxes.tolist() == [[50, 40, 60, 40]]
    assert seqs[0].frame(0).shape == (120, 160, 3)
    sample = make(seqs)[0]
    # Template and search crops come from the same picture, the target in the middle of both.
    x1, y1, x2, y2 = sample["box_xyxy"].tolist()
    assert abs((x1 + x2) / 2 - 0.5) < 0.05 and abs((y1 + y2) / 2 - 0.5) < 0.05


def test_coco_bad_layouts_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="instances_train2017"):
        load_coco(tmp_path)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2017.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a COCO"):
        load_coco(tmp_path)
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(FileNotFoundError, match="image folder"):
        load_coco(tmp_path)


def test_sequences_without_a_usable_box_are_refused(tmp_path):
    _write_image(tmp_path / "f.jpg")
    seq = Sequence("empty", [tmp_path / "f.jpg"], np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="no training sequence"):
        make([seq])
