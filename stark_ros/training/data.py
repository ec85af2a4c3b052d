"""Training samples the way STARK draws them.

A sample: the initial template and (STARK-ST) a dynamic template from one sequence, and a search
frame of the same sequence at most ``max_gap`` frames away; templates are cut around their
ground-truth box, the search crop around a jittered box (centre and log-normal scale jitter), all
with the one crop of :mod:`stark_ros.core.geometry`. The ground-truth box comes out normalised to
the search crop (x1, y1, x2, y2 in 0..1), as the corner head predicts it.

Stage 2 adds negatives for the score head (label 0): a search crop of the same frame that leaves
the target out, or a crop of another sequence's frame (another object).

Samples are a pure function of (seed, epoch, index): any worker, any rank and any resumed run
draws exactly the same sample for the same index, which is what makes resuming and DDP exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from stark_ros.core.boxes import centres, cxcywh_to_xywh, xywh_to_xyxy
from stark_ros.core.geometry import crop_around, normalize_patch
from stark_ros.datasets import Sequence
from stark_ros.tracking.settings import TrackerSettings
from stark_ros.training.config import Augmentation

# A jittered positive search crop must keep at least this share of the target's area inside.
MIN_VISIBLE_FRACTION = 0.5
# A same-frame negative may show at most this share of the target's area.
MAX_NEGATIVE_VISIBLE_FRACTION = 0.0
# Smallest ground-truth side (pixels) worth training on; smaller or NaN boxes are skipped.
MIN_BOX_SIDE = 2.0
PIXEL_RANGE = (0.0, 255.0)
BLUR_MIN_SIGMA = 0.1


def valid_frames(seq: Sequence) -> np.ndarray:
    """Indices of frames with a usable box (finite, not degenerate)."""
    b = np.asarray(seq.boxes, dtype=np.float64).reshape(-1, 4)
    ok = np.all(np.isfinite(b), axis=1)
    ok[ok] &= (b[ok, 2] >= MIN_BOX_SIDE) & (b[ok, 3] >= MIN_BOX_SIDE)
    return np.flatnonzero(ok)


def jitter_box(rng: np.random.Generator, box, center_jitter: float, scale_jitter: float) -> np.ndarray:
    """Official STARK jitter: size x exp(N(0, scale_jitter)) per side, centre moved uniformly by up
    to +-0.5 x center_jitter x sqrt(jittered area)."""
    box = np.asarray(box, dtype=np.float64)
    size = box[2:4] * np.exp(rng.standard_normal(2) * scale_jitter)
    max_offset = math.sqrt(size[0] * size[1]) * center_jitter
    centre = centres(box) + max_offset * (rng.random(2) - 0.5)
    return cxcywh_to_xywh(np.concatenate([centre, size]))


def visible_fraction(box_in_crop: np.ndarray, size: int) -> float:
    """Share of a box's area (crop pixels, x y w h) that lies inside the crop window."""
    x1, y1, x2, y2 = np.clip(xywh_to_xyxy(box_in_crop), 0, size)
    area = box_in_crop[2] * box_in_crop[3]
    return float(max(0.0, x2 - x1) * max(0.0, y2 - y1) / area) if area > 0 else 0.0


def pick_frames(rng, idx: np.ndarray, max_gap: int, num_templates: int) -> tuple[list[int], int]:
    """Template frames (the initial one first) and the search frame among the annotated frames
    ``idx`` of one sequence: the initial template within ``max_gap`` of the search frame, dynamic
    templates between them (closer in time to the search frame, as during tracking)."""
    search = int(idx[int(rng.integers(len(idx)))])
    near = idx[np.abs(idx - search) <= max_gap]
    first = int(near[int(rng.integers(len(near)))])
    lo, hi = min(first, search), max(first, search)
    between = idx[(idx >= lo) & (idx <= hi)]
    dynamic = [int(between[int(rng.integers(len(between)))]) for _ in range(num_templates - 1)]
    # Several dynamic templates: the most recent one last, as the tracker keeps them.
    dynamic.sort(key=lambda f: abs(f - first))
    return [first, *dynamic], search


@dataclass
class _Photometric:
    """Colour transform drawn once per crop (grayscale and flip are shared by a whole sample)."""

    gray: bool
    flip: bool
    brightness: float
    color: np.ndarray
    blur_sigma: float


class EpochSampledDataset(Dataset):
    """``samples_per_epoch`` samples, sample ``index`` of epoch ``e`` drawn from its own generator
    seeded by (seed, e, index): the same sample in any worker, rank or resumed run."""

    def __init__(self, samples_per_epoch: int, seed: int):
        self.samples_per_epoch = int(samples_per_epoch)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def sample_rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"sample {index} outside this epoch's {self.samples_per_epoch}")
        return np.random.default_rng([self.seed, self.epoch, index])


class PairDataset(EpochSampledDataset):
    """``sources``: one list of sequences per data source; ``source_weights``: their sampling ratios
    (official: a source is drawn by ratio, then a sequence uniformly within it)."""

    def __init__(self, sources: list[list[Sequence]], source_weights: list[float], settings: TrackerSettings,
                 samples_per_epoch: int, max_gap: int, aug: Augmentation, num_templates: int,
                 negative_prob: float = 0.0, negative_same_frame_prob: float = 0.5, seed: int = 0):
        if len(sources) != len(source_weights):
            raise ValueError("one weight per data source expected")
        self.sequences: list[Sequence] = []
        self.valid: list[np.ndarray] = []
        self.by_source: list[np.ndarray] = []
        weights = []
        for seqs, weight in zip(sources, source_weights, strict=True):
            members = []
            for seq in seqs:
                idx = valid_frames(seq)
                if len(idx):
                    members.append(len(self.sequences))
                    self.sequences.append(seq)
                    self.valid.append(idx)
            if members:
                self.by_source.append(np.asarray(members))
                weights.append(float(weight))
        if not self.sequences:
            raise ValueError("no training sequence has an annotated frame")
        super().__init__(samples_per_epoch, seed)
        p = np.asarray(weights, dtype=np.float64)
        self.source_prob = p / p.sum()
        self.settings = settings
        self.max_gap = int(max_gap)
        self.aug = aug
        self.num_templates = int(num_templates)
        self.negative_prob = float(negative_prob)
        self.negative_same_frame_prob = float(negative_same_frame_prob)

    # ---------------------------------------------------------------------------- sampling
    def _pick_sequence(self, rng) -> int:
        members = self.by_source[int(rng.choice(len(self.by_source), p=self.source_prob))]
        return int(members[int(rng.integers(len(members)))])

    def _pick_frames(self, rng, si: int) -> tuple[list[int], int]:
        return pick_frames(rng, self.valid[si], self.max_gap, self.num_templates)

    def draw_photometric(self, rng, gray: bool, flip: bool) -> _Photometric:
        a = self.aug
        brightness = float(rng.uniform(max(0.0, 1 - a.brightness), 1 + a.brightness)) if a.brightness > 0 else 1.0
        color = (rng.uniform(max(0.0, 1 - a.color), 1 + a.color, size=3) if a.color > 0 else np.ones(3))
        sigma = float(rng.uniform(BLUR_MIN_SIGMA, a.blur_max_sigma)) if rng.random() < a.blur_prob else 0.0
        return _Photometric(gray=gray, flip=flip, brightness=brightness, color=color, blur_sigma=sigma)

    @staticmethod
    def _apply_photometric(patch: np.ndarray, t: _Photometric) -> np.ndarray:
        out = patch
        if t.gray:
            out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        out = out.astype(np.float32) * (t.brightness * t.color).astype(np.float32)
        if t.blur_sigma > 0:
            out = cv2.GaussianBlur(out, (0, 0), t.blur_sigma)
        out = np.clip(out, *PIXEL_RANGE).astype(np.uint8)
        return out[:, ::-1] if t.flip else out

    def finish(self, crop, box_in_crop: np.ndarray, size: int, t: _Photometric):
        patch = self._apply_photometric(crop.patch, t)
        mask = crop.pad_mask[:, ::-1] if t.flip else crop.pad_mask
        if t.flip:
            box_in_crop = np.array([size - box_in_crop[0] - box_in_crop[2], box_in_crop[1],
                                    box_in_crop[2], box_in_crop[3]])
        img = normalize_patch(np.ascontiguousarray(patch), self.settings.mean, self.settings.std)[0]
        return torch.from_numpy(img), torch.from_numpy(np.ascontiguousarray(mask)), box_in_crop / size

    def positive_crop(self, rng, seq: Sequence, frame_idx: int, factor: float, size: int,
                      center_jitter: float, scale_jitter: float, frame: np.ndarray | None = None):
        """Crop around a jittered box that keeps most of the target (drawn again when not).
        ``frame``: the decoded image when the caller has it already (several crops of one frame)."""
        frame = seq.frame(frame_idx) if frame is None else frame
        gt = seq.boxes[frame_idx]
        if center_jitter > 0 or scale_jitter > 0:
            for _ in range(self.aug.max_resample):
                jittered = jitter_box(rng, gt, center_jitter, scale_jitter)
                if min(jittered[2], jittered[3]) < 1:
                    continue
                crop = crop_around(frame, jittered, factor, size)
                in_crop = crop.box_to_crop(gt)
                if visible_fraction(in_crop, size) >= MIN_VISIBLE_FRACTION:
                    return crop, in_crop
        crop = crop_around(frame, gt, factor, size)
        return crop, crop.box_to_crop(gt)

    def _same_frame_negative(self, rng, seq: Sequence, frame_idx: int):
        """A search crop of the target's scale, from the same frame, that does not show the target;
        None when the frame is too small to leave it out."""
        s, a = self.settings, self.aug
        frame = seq.frame(frame_idx)
        height, width = frame.shape[:2]
        gt = seq.boxes[frame_idx]
        for _ in range(self.aug.max_resample):
            box = jitter_box(rng, gt, 0.0, a.search_scale_jitter)
            if min(box[2], box[3]) < 1:
                continue
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            box[:2] = (cx - box[2] / 2, cy - box[3] / 2)
            crop = crop_around(frame, box, s.search_factor, s.search_size)
            in_crop = crop.box_to_crop(gt)
            if visible_fraction(in_crop, s.search_size) <= MAX_NEGATIVE_VISIBLE_FRACTION:
                return crop, in_crop
        return None

    def __getitem__(self, index: int) -> dict:
        rng = self.sample_rng(index)
        s, a = self.settings, self.aug
        si = self._pick_sequence(rng)
        seq = self.sequences[si]
        template_frames, search_frame = self._pick_frames(rng, si)
        gray = bool(rng.random() < a.grayscale_prob)
        flip = bool(rng.random() < a.flip_prob)
        sample = {"template_images": [], "template_masks": []}
        for f in template_frames:
            crop, in_crop = self.positive_crop(rng, seq, f, s.template_factor, s.template_size,
                                                a.template_center_jitter, a.template_scale_jitter)
            img, mask, _ = self.finish(crop, in_crop, s.template_size, self.draw_photometric(rng, gray, flip))
            sample["template_images"].append(img)
            sample["template_masks"].append(mask)

        negative = self.negative_prob > 0 and rng.random() < self.negative_prob
        found = None
        if negative and rng.random() < self.negative_same_frame_prob:
            found = self._same_frame_negative(rng, seq, search_frame)
        if negative and found is None and len(self.sequences) > 1:
            other = int(rng.integers(len(self.sequences) - 1))
            other += other >= si  # any sequence but this one
            oseq = self.sequences[other]
            oframe = int(self.valid[other][int(rng.integers(len(self.valid[other])))])
            found = self.positive_crop(rng, oseq, oframe, s.search_factor, s.search_size,
                                        a.search_center_jitter, a.search_scale_jitter)
        if found is None:
            negative = False
            found = self.positive_crop(rng, seq, search_frame, s.search_factor, s.search_size,
                                        a.search_center_jitter, a.search_scale_jitter)
        crop, in_crop = found
        img, mask, box = self.finish(crop, in_crop, s.search_size, self.draw_photometric(rng, gray, flip))
        sample.update(search_image=img, search_mask=mask,
                      box_xyxy=torch.tensor(xywh_to_xyxy(box), dtype=torch.float32),
                      label=torch.tensor(0.0 if negative else 1.0))
        return sample


def collate(samples: list[dict]) -> dict:
    """Samples -> one batch: each tensor stacked over the samples, each list of tensors (the
    templates, crops or cached features) stacked position by position."""
    batch = {}
    for key, first in samples[0].items():
        if isinstance(first, list):
            batch[key] = [torch.stack([s[key][t] for s in samples]) for t in range(len(first))]
        else:
            batch[key] = torch.stack([s[key] for s in samples])
    return batch
