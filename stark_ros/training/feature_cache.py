"""Training on cached backbone features: the fast path for a frozen backbone.

With the backbone frozen (its ImageNet weights kept), its output for a crop never changes, so it is
computed once per augmented crop and stored; the transformer and heads then train on the stored
features, without JPEG decoding, cropping or the backbone in the loop.

The cache holds, per annotated frame of every sequence, ``template_variants`` template crops and
``search_variants`` search crops, each cut and augmented by the :class:`CropAugmenter` that
:class:`PairDataset` uses (the same crop, jitter and photometric code); variant ``v`` is
horizontally flipped when ``v`` is odd, so a training pair takes all its crops with one flip
parity, as :class:`PairDataset` flips a whole sample. Frames without a box (the target absent)
get search crops around the image centre at the nearest box's scale: real absences for the score
head. Pairs are then combined at training time
(any template frame with any search frame within ``max_gap``), so the cache's few crops per frame
give far more distinct pairs than it stores.

Made absences (stage 2's realistic negatives): :func:`build_made_absences` adds, on every
``every``-th annotated frame, one search crop per kind of :data:`stark_ros.datasets.absences.KINDS`
(the target erased from its scene, covered by another video's target, the view moved beside it),
cut where the target was, as the tracker would look for it. They are stored beside the cache's
crops (``made_*.npy`` per shard, ``made_done.json``, and ``made.json`` when all are written), so
adding them never rebuilds the cache.

Layout of a cache folder: ``meta.json`` (written last: a folder without it is incomplete) and
``shards/<n>_<sequence>/`` per sequence (``done.json`` marks a finished one; a rebuild keeps the
finished shards made with the same backbone, settings and augmentation), each with
``<kind>_feat.npy`` (N, C, h, w) float16, ``<kind>_mask.npy`` (N, h, w) uint8 (1 = padding, at
feature resolution), ``<kind>_box.npy`` (N, 4) float32 x1y1x2y2 normalised to the crop (NaN for an
absence), ``<kind>_index.npy`` (N, 3) int32 (sequence, frame, variant) for kind template / search.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stark_ros.core.boxes import xywh_to_xyxy
from stark_ros.datasets import Sequence
from stark_ros.datasets.absences import KINDS as ABSENCE_KINDS
from stark_ros.datasets.absences import make_absence, target_patch
from stark_ros.model.stark import feature_mask
from stark_ros.tracking.settings import TrackerSettings
from stark_ros.training.augmentation import CropAugmenter
from stark_ros.training.config import Augmentation
from stark_ros.training.data import EpochSampledDataset, pick_frames, valid_frames

LOG = logging.getLogger("stark_ros.training")
CACHE_FORMAT = 2
META = "meta.json"
SHARDS = "shards"
SHARD_DONE = "done.json"
KINDS = ("template", "search")
# Crops per backbone call while the cache is built (larger batches were slower on the 2-core CPU).
BUILD_BATCH = 4
# Variant index of an absence crop (a frame without the target).
ABSENT_VARIANT = -1
FLIP_PARITIES = 2
MADE = "made"
MADE_DONE = "made_done.json"
MADE_META = "made.json"


def backbone_fingerprint(backbone: torch.nn.Module) -> str:
    """sha256 of the backbone's weights: a cache belongs to exactly one backbone."""
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheSpec:
    template_variants: int = 2
    search_variants: int = 4
    seed: int = 0


@dataclass(frozen=True)
class MadeAbsenceSpec:
    # One made absence per kind on every ``every``-th annotated frame of a sequence.
    every: int = 2
    seed: int = 0


def _nearest_box(boxes: np.ndarray, valid: np.ndarray, frame: int) -> np.ndarray:
    return boxes[valid[int(np.argmin(np.abs(valid - frame)))]]


class _Writer:
    """Backbone features of one sequence's crops of one kind, computed in small batches."""

    def __init__(self, backbone):
        self.backbone = backbone
        self.pending: list = []
        self.parts: dict[str, list] = {"feat": [], "mask": [], "box": [], "index": []}

    def add(self, img: torch.Tensor, mask: torch.Tensor, box_xyxy: np.ndarray, index) -> None:
        self.pending.append((img, mask, box_xyxy, index))
        if len(self.pending) >= BUILD_BATCH:
            self.flush()

    @torch.no_grad()
    def flush(self) -> None:
        if not self.pending:
            return
        imgs = torch.stack([p[0] for p in self.pending]).contiguous(memory_format=torch.channels_last)
        feats = self.backbone(imgs)
        masks = feature_mask(torch.stack([p[1] for p in self.pending]), feats.shape[-2:])
        self.parts["feat"].append(feats.float().numpy().astype(np.float16))
        self.parts["mask"].append(masks.numpy().astype(np.uint8))
        self.parts["box"].append(np.stack([p[2] for p in self.pending]).astype(np.float32))
        self.parts["index"].append(np.asarray([p[3] for p in self.pending], np.int32))
        self.pending.clear()

    def save(self, folder: Path, kind: str) -> int:
        self.flush()
        for name, parts in self.parts.items():
            np.save(folder / f"{kind}_{name}.npy", np.concatenate(parts) if parts else np.zeros((0,)))
        return sum(len(p) for p in self.parts["index"])


def _shard(folder: Path, si: int, seq: Sequence) -> Path:
    return folder / SHARDS / f"{si:04d}_{seq.name}"


def build_feature_cache(folder, sequences: list[Sequence], backbone: torch.nn.Module, settings: TrackerSettings,
                        aug: Augmentation, spec: CacheSpec = CacheSpec()) -> Path:
    """Compute and store the backbone features of every sequence's augmented crops (see the module
    docstring), one shard per sequence: an interrupted build resumes at the first missing shard.
    ``backbone`` stays frozen; the cache records its fingerprint."""
    folder = Path(folder)
    (folder / SHARDS).mkdir(parents=True, exist_ok=True)
    (folder / META).unlink(missing_ok=True)
    fingerprint = backbone_fingerprint(backbone)
    spec_dict = {"template_variants": spec.template_variants, "search_variants": spec.search_variants,
                 "seed": spec.seed}
    # As JSON gives it back (tuples become lists), to compare with the shards' done.json.
    identity = json.loads(json.dumps({"backbone": fingerprint, "settings": settings.to_dict(), "spec": spec_dict,
                                      "aug": dataclasses.asdict(aug)}))
    backbone = backbone.eval().to(memory_format=torch.channels_last)
    augmenter = CropAugmenter(settings, aug)
    t0 = time.perf_counter()
    rows = {kind: 0 for kind in KINDS}
    for si, seq in enumerate(sequences):
        shard = _shard(folder, si, seq)
        done = shard / SHARD_DONE
        if done.is_file() and json.loads(done.read_text()).get("identity") == identity:
            counts = json.loads(done.read_text())["rows"]
        else:
            shard.mkdir(parents=True, exist_ok=True)
            writers = {kind: _Writer(backbone) for kind in KINDS}
            valid = valid_frames(seq)
            annotated = set(valid.tolist())
            for fi in range(len(seq)):
                if fi not in annotated and not annotated:
                    continue  # a video without any box: nothing to scale an absence crop by
                near_box = None if fi in annotated else _nearest_box(seq.boxes, valid, fi)
                for kind, img, mask, box, index in frame_crops(augmenter, spec, si, seq, fi, near_box):
                    writers[kind].add(img, mask, box, index)
            counts = {kind: w.save(shard, kind) for kind, w in writers.items()}
            done.write_text(json.dumps({"identity": identity, "rows": counts}))
        for kind in KINDS:
            rows[kind] += counts[kind]
        LOG.info("feature cache: %d/%d sequences (%s), %.0f s", si + 1, len(sequences), seq.name,
                 time.perf_counter() - t0)
    meta = {"format": CACHE_FORMAT, "sequences": [s.name for s in sequences], **identity,
            "shards": [_shard(folder, si, seq).name for si, seq in enumerate(sequences)],
            "rows": rows, "build_seconds": time.perf_counter() - t0}
    (folder / META).write_text(json.dumps(meta, indent=1))
    return folder


def frame_crops(augmenter: CropAugmenter, spec: CacheSpec, si: int, seq: Sequence, fi: int, near_box=None):
    """The augmented crops of frame ``fi`` of sequence ``si`` that the cache stores, as
    (kind, normalised image, pixel mask, box x1y1x2y2 / crop size, (si, fi, variant)); a pure
    function of (spec.seed, si, fi). ``near_box``: for a frame without the target, the nearest
    annotated box, whose scale its one absence crop takes (around the image centre: the cut is
    centred on where the target was)."""
    aug = augmenter.aug
    rng = np.random.default_rng([spec.seed, si, fi])
    frame = seq.frame(fi)
    if near_box is not None:
        crop = augmenter.centred_crop(frame, float(near_box[2]), float(near_box[3]))
        t = augmenter.draw_photometric(rng, False, bool(rng.random() < aug.flip_prob))
        img, mask, _ = augmenter.finish(crop, np.zeros(4), augmenter.search.size, t)
        yield "search", img, mask, np.full(4, np.nan, np.float32), (si, fi, ABSENT_VARIANT)
        return
    for kind, variants, cut in (("template", spec.template_variants, augmenter.template),
                                ("search", spec.search_variants, augmenter.search)):
        for v in range(variants):
            t = augmenter.draw_photometric(rng, bool(rng.random() < aug.grayscale_prob), v % 2 == 1)
            crop, in_crop = augmenter.positive_crop(rng, seq, fi, cut, frame=frame)
            img, mask, box = augmenter.finish(crop, in_crop, cut.size, t)
            yield kind, img, mask, xywh_to_xyxy(box).astype(np.float32), (si, fi, v)


def _occluder_names(sequences: list[Sequence]) -> list[str]:
    """The sequences that can lend an occluder: those with an annotated frame."""
    return [seq.name for seq in sequences if len(valid_frames(seq))]


def _occluder_patches(sequences: list[Sequence]) -> list[tuple[str, np.ndarray]]:
    """(sequence name, its target's pixels in its first annotated frame): what covers another
    video's target in an ``occluded`` absence."""
    by_name = {seq.name: seq for seq in sequences}
    return [(name, target_patch(by_name[name], int(valid_frames(by_name[name])[0])))
            for name in _occluder_names(sequences)]


def _made_identity(backbone: torch.nn.Module, settings: TrackerSettings, aug: Augmentation, spec: MadeAbsenceSpec,
                   occluder_names: list[str]) -> dict:
    """What made absences depend on, as JSON gives it back (stored in made.json and each shard)."""
    return json.loads(json.dumps({"backbone": backbone_fingerprint(backbone), "settings": settings.to_dict(),
                                  "aug": dataclasses.asdict(aug), "spec": dataclasses.asdict(spec),
                                  "occluders": occluder_names}))


def made_absence_crops(augmenter: CropAugmenter, spec: MadeAbsenceSpec, si: int, seq: Sequence, fi: int,
                       occluders: list[tuple[str, np.ndarray]]):
    """The made-absence search crops of annotated frame ``fi`` of sequence ``si``: one per absence
    kind, cut around the (jittered) box where the target was, as (normalised image, pixel mask,
    (si, fi, kind index, flip parity)); the flip parity alternates so both parities occur on every
    frame. A pure function of (spec.seed, si, fi)."""
    rng = np.random.default_rng([spec.seed, si, fi, len(ABSENCE_KINDS)])
    frame = seq.frame(fi)
    box = seq.boxes[fi]
    others = [patch for name, patch in occluders if name != seq.name]
    for k, kind in enumerate(ABSENCE_KINDS):
        occluder = others[int(rng.integers(len(others)))] if others else None
        if kind == "occluded" and occluder is None:
            continue
        flip = (fi // spec.every + k) % FLIP_PARITIES
        t = augmenter.draw_photometric(rng, bool(rng.random() < augmenter.aug.grayscale_prob), flip == 1)
        crop, in_crop = augmenter.positive_crop(rng, seq, fi, augmenter.search,
                                                frame=make_absence(frame, box, kind, occluder))
        img, mask, _ = augmenter.finish(crop, in_crop, augmenter.search.size, t)
        yield img, mask, (si, fi, k, flip)


def build_made_absences(folder, sequences: list[Sequence], backbone: torch.nn.Module, settings: TrackerSettings,
                        aug: Augmentation, occluder_sources: list[Sequence],
                        spec: MadeAbsenceSpec = MadeAbsenceSpec()) -> Path:
    """Add the made absences (module docstring) to the complete cache in ``folder``, built from the
    same ``sequences``; occluders come from ``occluder_sources`` only (the training videos: the
    validation videos' targets stay unseen). Resumable per sequence, like the cache."""
    folder = Path(folder)
    cache_meta = json.loads((folder / META).read_text())
    if cache_meta["sequences"] != [s.name for s in sequences]:
        raise ValueError(f"{folder}: made absences need the cache's own sequences")
    (folder / MADE_META).unlink(missing_ok=True)
    occluders = _occluder_patches(occluder_sources)
    identity = _made_identity(backbone, settings, aug, spec, [name for name, _ in occluders])
    backbone = backbone.eval().to(memory_format=torch.channels_last)
    augmenter = CropAugmenter(settings, aug)
    t0 = time.perf_counter()
    rows = 0
    for si, seq in enumerate(sequences):
        shard = _shard(folder, si, seq)
        done = shard / MADE_DONE
        if done.is_file() and json.loads(done.read_text()).get("identity") == identity:
            rows += json.loads(done.read_text())["rows"]
            continue
        writer = _Writer(backbone)
        for fi in valid_frames(seq)[::spec.every]:
            for img, mask, index in made_absence_crops(augmenter, spec, si, seq, int(fi), occluders):
                writer.add(img, mask, np.full(4, np.nan, np.float32), index)
        count = writer.save(shard, MADE)
        done.write_text(json.dumps({"identity": identity, "rows": count}))
        rows += count
        LOG.info("made absences: %d/%d sequences (%s), %.0f s", si + 1, len(sequences), seq.name,
                 time.perf_counter() - t0)
    (folder / MADE_META).write_text(json.dumps({**identity, "rows": rows,
                                                "build_seconds": time.perf_counter() - t0}, indent=1))
    return folder


def made_absences_match(folder, backbone: torch.nn.Module, settings: TrackerSettings, aug: Augmentation,
                        occluder_sources: list[Sequence], spec: MadeAbsenceSpec) -> bool:
    """Whether ``folder`` holds made absences built with exactly these settings."""
    path = Path(folder) / MADE_META
    if not path.is_file():
        return False
    made = json.loads(path.read_text())
    wanted = _made_identity(backbone, settings, aug, spec, _occluder_names(occluder_sources))
    return all(made.get(key) == value for key, value in wanted.items())


class FeatureCache:
    """A built cache, loaded into memory (float16: about 60 KB per search crop)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        meta_path = self.folder / META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.folder} is not a complete feature cache (no {META}); build it with "
                                    "python -m stark_ros.training.feature_cache")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"{self.folder}: cache format {self.meta.get('format')}, expected {CACHE_FORMAT}")
        self.sequences: list[str] = list(self.meta["sequences"])
        self.arrays = {}
        shards = [self.folder / SHARDS / name for name in self.meta["shards"]]
        for kind in KINDS:
            parts = {name: [np.load(shard / f"{kind}_{name}.npy") for shard in shards]
                     for name in ("feat", "mask", "box", "index")}
            parts = {name: [p for p in arrays if len(p)] for name, arrays in parts.items()}
            self.arrays[kind] = {"feat": torch.from_numpy(np.concatenate(parts["feat"])),
                                 "mask": torch.from_numpy(np.concatenate(parts["mask"])),
                                 "box": np.concatenate(parts["box"]),
                                 "index": np.concatenate(parts["index"])}
        # (sequence, frame, variant) -> row, one dense table per kind.
        self.rows = {}
        for kind in KINDS:
            index = self.arrays[kind]["index"]
            table = {}
            for row, (si, fi, v) in enumerate(index.tolist()):
                table[(si, fi, v)] = row
            self.rows[kind] = table
        spec = self.meta["spec"]
        self.variants = {"template": int(spec["template_variants"]), "search": int(spec["search_variants"])}
        self.absent_rows = {}
        for (si, _fi, v), row in self.rows["search"].items():
            if v == ABSENT_VARIANT:
                self.absent_rows.setdefault(si, []).append(row)
        self._load_made(shards)

    def _load_made(self, shards: list[Path]) -> None:
        """The made absences where the cache has them: ``made_frames[si]`` (sorted frames) and
        ``made_rows[(si, fi)]`` (rows, one per kind) into ``arrays["made"]``."""
        self.made_frames: dict[int, np.ndarray] = {}
        self.made_rows: dict[tuple[int, int], list[tuple[int, int]]] = {}
        if not (self.folder / MADE_META).is_file():
            return
        made = json.loads((self.folder / MADE_META).read_text())
        if made.get("backbone") != self.meta["backbone"]:
            raise ValueError(f"{self.folder}: its made absences come from another backbone: build them again")
        parts = {name: [a for a in (np.load(shard / f"{MADE}_{name}.npy") for shard in shards) if len(a)]
                 for name in ("feat", "mask", "index")}
        if not parts["index"]:
            return
        self.arrays[MADE] = {"feat": torch.from_numpy(np.concatenate(parts["feat"])),
                             "mask": torch.from_numpy(np.concatenate(parts["mask"])),
                             "box": None, "index": np.concatenate(parts["index"])}
        frames: dict[int, set[int]] = {}
        for row, (si, fi, _kind, flip) in enumerate(self.arrays[MADE]["index"].tolist()):
            self.made_rows.setdefault((si, fi), []).append((row, flip))
            frames.setdefault(si, set()).add(fi)
        self.made_frames = {si: np.array(sorted(fis)) for si, fis in frames.items()}

    def check_backbone(self, backbone: torch.nn.Module) -> None:
        if backbone_fingerprint(backbone) != self.meta["backbone"]:
            raise ValueError(f"{self.folder} was built with other backbone weights: build it again")

    def frames_with_box(self, si: int) -> np.ndarray:
        index = self.arrays["search"]["index"]
        keep = (index[:, 0] == si) & (index[:, 2] == 0)
        return np.sort(index[keep, 1])

    def get(self, kind: str, row: int):
        a = self.arrays[kind]
        box = np.full(4, np.nan, np.float32) if a["box"] is None else a["box"][row]
        return a["feat"][row].float(), a["mask"][row].float(), box

    def made_row(self, rng, si: int, near_frame: int, flip: int) -> int | None:
        """A made absence of sequence ``si`` at its made frame nearest ``near_frame`` (the scene the
        templates come from), of flip parity ``flip`` where that frame has one; None without any."""
        frames = self.made_frames.get(si)
        if frames is None or not len(frames):
            return None
        fi = int(frames[int(np.argmin(np.abs(frames - near_frame)))])
        rows = self.made_rows[(si, fi)]
        same = [row for row, parity in rows if parity == flip] or [row for row, _ in rows]
        return same[int(rng.integers(len(same)))]


class CachedPairDataset(EpochSampledDataset):
    """Training pairs from a :class:`FeatureCache`: the sampling of :class:`PairDataset` (a sequence
    uniformly, a search frame, templates within ``max_gap``), a pure function of (seed, epoch, index).
    Stage 2 negatives (``negative_prob``): with probability ``negative_made_prob`` a made absence
    of the same sequence near the search frame (where the cache has them); otherwise, with
    probability ``negative_absent_prob`` where the sequence has frames without the target, one of
    those; otherwise the search crop of another sequence."""

    def __init__(self, cache: FeatureCache, sequence_names: list[str], samples_per_epoch: int, max_gap: int,
                 num_templates: int, negative_prob: float = 0.0, negative_absent_prob: float = 0.5,
                 negative_made_prob: float = 0.0, seed: int = 0):
        by_name = {n: i for i, n in enumerate(cache.sequences)}
        missing = sorted(set(sequence_names) - set(by_name))
        if missing:
            raise ValueError(f"feature cache {cache.folder} lacks sequences {missing}: build it again")
        self.cache = cache
        self.seq_ids = [by_name[n] for n in sequence_names]
        self.frames = {si: cache.frames_with_box(si) for si in self.seq_ids}
        self.seq_ids = [si for si in self.seq_ids if len(self.frames[si])]
        if not self.seq_ids:
            raise ValueError("no cached sequence has an annotated frame")
        super().__init__(samples_per_epoch, seed)
        self.max_gap = int(max_gap)
        self.num_templates = int(num_templates)
        self.negative_prob = float(negative_prob)
        self.negative_absent_prob = float(negative_absent_prob)
        self.negative_made_prob = float(negative_made_prob)

    def _variant(self, rng, kind: str, flip: int) -> int:
        return flip + FLIP_PARITIES * int(rng.integers(self.cache.variants[kind] // FLIP_PARITIES))

    def _negative(self, rng, si: int, search_frame: int, flip: int) -> tuple[str, int] | None:
        """(cache kind, row) of a negative search crop for a pair from sequence ``si`` (see the class
        docstring); None when none can be drawn."""
        if self.negative_made_prob > 0 and rng.random() < self.negative_made_prob:
            row = self.cache.made_row(rng, si, search_frame, flip)
            if row is not None:
                return MADE, row
        if si in self.cache.absent_rows and rng.random() < self.negative_absent_prob:
            absent = self.cache.absent_rows[si]
            return "search", absent[int(rng.integers(len(absent)))]
        if len(self.seq_ids) > 1:
            other = self.seq_ids[int(rng.integers(len(self.seq_ids) - 1))]
            other = other if other != si else self.seq_ids[-1]
            frames = self.frames[other]
            return "search", self.cache.rows["search"][(other, int(frames[int(rng.integers(len(frames)))]),
                                                        self._variant(rng, "search", flip))]
        return None

    def __getitem__(self, index: int) -> dict:
        rng = self.sample_rng(index)
        si = self.seq_ids[int(rng.integers(len(self.seq_ids)))]
        template_frames, search_frame = pick_frames(rng, self.frames[si], self.max_gap, self.num_templates)
        flip = int(rng.integers(FLIP_PARITIES))
        rows = self.cache.rows
        feats, masks = [], []
        for f in template_frames:
            feat, mask, _ = self.cache.get("template", rows["template"][(si, f, self._variant(rng, "template", flip))])
            feats.append(feat)
            masks.append(mask)
        negative = self.negative_prob > 0 and rng.random() < self.negative_prob
        found = self._negative(rng, si, search_frame, flip) if negative else None
        if found is None:
            negative = False
            found = ("search", rows["search"][(si, search_frame, self._variant(rng, "search", flip))])
        kind, row = found
        feat, mask, box = self.cache.get(kind, row)
        return {"template_feats": feats, "template_masks": masks, "search_feat": feat, "search_mask": mask,
                "box_xyxy": torch.from_numpy(np.nan_to_num(box, nan=0.0)),
                "label": torch.tensor(0.0 if negative else 1.0)}
