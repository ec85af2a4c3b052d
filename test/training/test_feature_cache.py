"""The fast training path (cached backbone features) against the plain one (crops through the
backbone), on real training frames: the same crops, the same features, the same loss; the trainer
builds a cache on first use, trains on it, validates on the held-out sequences and refuses a cache
of other backbone weights."""

from pathlib import Path

import numpy as np
import pytest
import torch

from stark_ros.datasets import Sequence, load_simple_sequence
from stark_ros.datasets.absences import KINDS as ABSENCE_KINDS
from stark_ros.training.augmentation import CropAugmenter
from stark_ros.training.config import load_config
from stark_ros.training.feature_cache import (
    ABSENT_VARIANT,
    MADE,
    CachedPairDataset,
    CacheSpec,
    FeatureCache,
    MadeAbsenceSpec,
    build_feature_cache,
    build_made_absences,
    frame_crops,
    made_absences_match,
)
from stark_ros.training.objective import box_losses
from stark_ros.training.recipe import build_training_model
from stark_ros.training.trainer import Trainer

TINY = Path(__file__).resolve().parents[2] / "training" / "configs" / "tiny.yaml"
FRAMES = 4
SPEC = CacheSpec(template_variants=2, search_variants=2, seed=7)
# Cached features are float16: the loss through them agrees with the float32 path to this share.
LOSS_RTOL = 1e-2


def _short(shared, name: str, frames: int = FRAMES) -> Sequence:
    seq = load_simple_sequence(shared / "data" / "train" / name)
    return Sequence(name=seq.name, frames=seq.frames[:frames], boxes=seq.boxes[:frames])


@pytest.fixture(scope="module")
def cached(shared, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    cfg = load_config(TINY, [f"work_dir={folder}"])
    model = build_training_model(cfg).eval()
    # uav123_car14 starts with frames where the target is hidden (NaN boxes): absence crops.
    seqs = [_short(shared, "otb_david"), _short(shared, "otb_biker")]
    build_feature_cache(folder / "c", seqs, model.backbone, model.config.tracker, cfg.data.aug, SPEC)
    return cfg, model, seqs, FeatureCache(folder / "c")


def test_fast_path_gives_the_plain_path_loss_on_the_same_sample(cached):
    cfg, model, seqs, cache = cached
    augmenter = CropAugmenter(model.config.tracker, cfg.data.aug)
    crops = {}
    for fi in range(FRAMES):
        for kind, img, mask, box, index in frame_crops(augmenter, SPEC, 0, seqs[0], fi):
            crops[(kind, *index)] = (img, mask, box)
    # One sample: templates of frames 0 and 1, the search crop of frame 3, all of flip parity 1.
    keys = [("template", 0, 0, 1), ("template", 0, 1, 1)]
    search_key = ("search", 0, 3, 1)
    with torch.no_grad():
        plain = model([crops[k][0][None] for k in keys], [crops[k][1][None] for k in keys],
                      crops[search_key][0][None], crops[search_key][1][None])
        feats = [cache.get("template", cache.rows["template"][k[1:]]) for k in keys]
        search = cache.get("search", cache.rows["search"][search_key[1:]])
        fast = model([f[0][None] for f in feats], [f[1][None] for f in feats], search[0][None], search[1][None],
                     from_features=True)
    gt = torch.from_numpy(crops[search_key][2])[None]
    np.testing.assert_array_equal(search[2], crops[search_key][2])
    plain_loss = box_losses(plain["pred_boxes"][:, 0], gt, 2.0, 5.0)["loss"]
    fast_loss = box_losses(fast["pred_boxes"][:, 0], gt, 2.0, 5.0)["loss"]
    assert torch.isfinite(plain_loss)
    torch.testing.assert_close(fast_loss, plain_loss, rtol=LOSS_RTOL, atol=0.0)
    torch.testing.assert_close(fast["pred_logits"], plain["pred_logits"], rtol=LOSS_RTOL, atol=LOSS_RTOL)


def test_cache_holds_every_variant_and_pairs_keep_one_flip_parity(cached):
    _, _, seqs, cache = cached
    for kind, variants in (("template", SPEC.template_variants), ("search", SPEC.search_variants)):
        assert len(cache.rows[kind]) == len(seqs) * FRAMES * variants
    ds = CachedPairDataset(cache, [s.name for s in seqs], 16, max_gap=FRAMES, num_templates=2)
    ds.set_epoch(0)
    first = ds[3]
    again = ds[3]
    assert all(torch.equal(a, b) for a, b in zip(first["template_feats"], again["template_feats"], strict=True))
    assert first["search_feat"].shape[-1] == 128 // 16 and first["label"] == 1.0
    box = first["box_xyxy"].numpy()
    assert 0 < box[2] - box[0] <= 1.5 and 0 < box[3] - box[1] <= 1.5


def test_absence_crops_are_negatives_with_no_box(shared, tmp_path):
    cfg = load_config(TINY, [f"work_dir={tmp_path}"])
    model = build_training_model(cfg)
    seq = load_simple_sequence(shared / "data" / "train" / "uav123_car14")
    hidden = np.flatnonzero(~np.isfinite(seq.boxes).all(axis=1))
    assert len(hidden), "uav123_car14 has frames without the target"
    keep = list(range(int(hidden[0]) - 2, int(hidden[0]) + 2))
    short = Sequence(name=seq.name, frames=[seq.frames[i] for i in keep], boxes=seq.boxes[keep])
    build_feature_cache(tmp_path / "c", [short], model.backbone, model.config.tracker, cfg.data.aug, SPEC)
    cache = FeatureCache(tmp_path / "c")
    absent = [k for k in cache.rows["search"] if k[2] == ABSENT_VARIANT]
    assert len(absent) == int(np.sum(~np.isfinite(short.boxes).all(axis=1)))
    assert np.isnan(cache.get("search", cache.rows["search"][absent[0]])[2]).all()


def test_made_absences_join_the_cache_as_same_scene_negatives(shared, tmp_path):
    cfg = load_config(TINY, [f"work_dir={tmp_path}"])
    model = build_training_model(cfg).eval()
    seqs = [_short(shared, "otb_david"), _short(shared, "otb_biker")]
    settings, aug = model.config.tracker, cfg.data.aug
    build_feature_cache(tmp_path / "c", seqs, model.backbone, settings, aug, SPEC)
    spec = MadeAbsenceSpec(every=2, seed=7)
    # Occluders from otb_biker only (the "training" video): otb_david's target never covers anything.
    assert not made_absences_match(tmp_path / "c", model.backbone, settings, aug, seqs[1:], spec)
    build_made_absences(tmp_path / "c", seqs, model.backbone, settings, aug, seqs[1:], spec)
    assert made_absences_match(tmp_path / "c", model.backbone, settings, aug, seqs[1:], spec)
    assert not made_absences_match(tmp_path / "c", model.backbone, settings, aug, seqs[1:], MadeAbsenceSpec(every=1))
    cache = FeatureCache(tmp_path / "c")
    index = cache.arrays[MADE]["index"]
    made_frames = len(range(0, FRAMES, spec.every))
    # otb_david gets every kind; otb_biker has no other video to be covered by, so no "occluded".
    assert np.sum(index[:, 0] == 0) == made_frames * len(ABSENCE_KINDS)
    assert np.sum(index[:, 0] == 1) == made_frames * (len(ABSENCE_KINDS) - 1)
    assert set(index[:, 3].tolist()) == {0, 1}
    # A made absence is not the positive crop of its frame: the target is gone from the features.
    made = cache.get(MADE, 0)[0]
    positive = cache.get("search", cache.rows["search"][(0, 0, 0)])[0]
    assert made.shape == positive.shape and not torch.equal(made, positive)
    assert np.isnan(cache.get(MADE, 0)[2]).all()
    # Every negative comes from the pair's own video when made absences are asked for.
    ds = CachedPairDataset(cache, [s.name for s in seqs], 32, max_gap=FRAMES, num_templates=2, negative_prob=1.0,
                           negative_made_prob=1.0)
    ds.set_epoch(0)
    made_feats = cache.arrays[MADE]["feat"].float()
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["label"] == 0.0
        assert any(torch.equal(sample["search_feat"], f) for f in made_feats)
    # A second build keeps what is there (resumable, like the cache).
    build_made_absences(tmp_path / "c", seqs, model.backbone, settings, aug, seqs[1:], spec)
    assert np.array_equal(FeatureCache(tmp_path / "c").arrays[MADE]["index"], index)


def test_trainer_builds_the_cache_trains_on_it_and_validates(tmp_path):
    options = [f"work_dir={tmp_path}", "epochs=1", "data.samples_per_epoch=64", "data.feature_cache=cache",
               "data.validation=[otb_deer]", "data.val_samples=16", "data.sources=[{kind: simple, root: "
               "data/train, include: [otb_deer, otb_skiing, dtb70_mountainbike6]}]"]
    trainer = Trainer(load_config(TINY, options), progress=False)
    assert (tmp_path / "cache" / "meta.json").is_file()
    assert "otb_deer" not in {trainer.dataset.cache.sequences[i] for i in trainer.dataset.seq_ids}
    history = trainer.train()
    assert len(history) == 64 // 8 and all(np.isfinite(h["loss"]) for h in history)
    summary = trainer.epoch_summaries[-1]
    assert 0.0 <= summary["val_iou"] <= 1.0
    # The cache belongs to that backbone: other weights are refused.
    other = Trainer(load_config(TINY, options), progress=False)
    with torch.no_grad():
        next(other.model.backbone.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="other backbone weights"):
        other.dataset.cache.check_backbone(other.model.backbone)


def test_feature_cache_needs_a_frozen_backbone(tmp_path):
    with pytest.raises(ValueError, match="frozen backbone"):
        load_config(TINY, [f"work_dir={tmp_path}", "data.feature_cache=cache", "train_backbone=true"])
