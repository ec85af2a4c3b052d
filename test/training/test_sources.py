"""Data sources of a config -> sequences: the simple layout of shared/, GOT-10k, LaSOT and TrackingNet
folders (tiny real layouts written to disk), include/exclude, and clear errors."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from stark_ros.training.config import DataSource
from stark_ros.training.sources import load_source

FRAMES = 3
BOX = "10,12,30,20"


def _frames(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), np.full((60, 80, 3), 128, np.uint8))


# shared/data/train: 61 videos (its README lists them).
TRAIN_VIDEOS = 61


def test_simple_layout_from_shared_with_exclude(shared):
    seqs = load_source(DataSource(kind="simple", root="data/train", exclude=["vot_car1"]))
    assert len(seqs) == TRAIN_VIDEOS - 1 and "vot_car1" not in {s.name for s in seqs}
    # Target-centred cuts: image sizes vary within one video.
    sizes = {cv2.imread(str(p)).shape[:2] for p in seqs[0].frames[:40]}
    assert len(sizes) > 1
    only = load_source(DataSource(kind="simple", root=str(shared / "data" / "sot"), include=["vot_bag"]))
    assert [s.name for s in only] == ["vot_bag"]


def test_got10k_lasot_and_trackingnet_layouts(tmp_path):
    got = tmp_path / "got10k" / "train"
    _frames(got / "GOT-10k_Train_000001", [f"{i:08d}.jpg" for i in range(1, FRAMES + 1)])
    (got / "GOT-10k_Train_000001" / "groundtruth.txt").write_text(f"{BOX}\n" * FRAMES)
    (got / "list.txt").write_text("GOT-10k_Train_000001\n")
    seqs = load_source(DataSource(kind="got10k", root=str(tmp_path / "got10k"), split="train"))
    assert [len(s) for s in seqs] == [FRAMES] and seqs[0].boxes[0].tolist() == [10, 12, 30, 20]

    lasot = tmp_path / "lasot" / "cat" / "cat-1"
    _frames(lasot / "img", [f"{i:08d}.jpg" for i in range(1, FRAMES + 1)])
    (lasot / "groundtruth.txt").write_text(f"{BOX}\n" * FRAMES)
    assert [s.name for s in load_source(DataSource(kind="lasot", root=str(tmp_path / "lasot")))] == ["cat-1"]

    tn = tmp_path / "trackingnet"
    for chunk, name in (("TRAIN_0", "a"), ("TEST", "b")):
        _frames(tn / chunk / "frames" / name, [f"{i}.jpg" for i in range(FRAMES)])
        (tn / chunk / "anno").mkdir(parents=True)
        (tn / chunk / "anno" / f"{name}.txt").write_text(f"{BOX}\n" * FRAMES)
    assert [s.name for s in load_source(DataSource(kind="trackingnet", root=str(tn)))] == ["a"]


def test_missing_or_emptied_sources_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_source(DataSource(kind="simple", root=str(tmp_path / "nowhere")))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_source(DataSource(kind="got10k", root=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="no sequence left"):
        load_source(DataSource(kind="simple", root="data/sot", include=["no_such_sequence"]))


def test_validation_split_is_held_out_by_the_default_recipe_and_exists(shared):
    """The split named in the code (score study, evaluation) is the one the default recipe holds out."""
    from stark_ros.datasets.splits import TRAIN_FIRST_22, TRAIN_VALIDATION
    from stark_ros.training.config import load_config

    recipe = Path(__file__).resolve().parents[2] / "training" / "configs" / "stark_lite_corr_st1.yaml"
    assert tuple(load_config(recipe).data.validation) == TRAIN_VALIDATION
    names = {s.name for s in load_source(DataSource(kind="simple", root="data/train"))}
    assert set(TRAIN_VALIDATION) <= names and set(TRAIN_FIRST_22) <= names and len(TRAIN_FIRST_22) == 22
