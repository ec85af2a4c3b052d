"""Training samples the way STARK draws them.

A sample: the initial template and (STARK-ST) a dynamic template from one sequence, and a search
frame of the same sequence at most ``max_gap`` frames away; the crops and their augmentation are
:class:`~stark_ros.training.augmentation.CropAugmenter`'s. The ground-truth box comes out normalised
to the search crop (x1, y1, x2, y2 in 0..1), as the corner head predicts it.

Stage 2 adds negatives for the score head (label 0): a search crop of the same frame that leaves
the target out, or a crop of another sequence's frame (another object).

Samples are a pure function of (seed, epoch, index): any worker, any rank and any resumed run
draws exactly the same sample for the same index, which is what makes resuming and DDP exact.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from stark_ros.core.boxes import xywh_to_xyxy
from stark_ros.datasets import Sequence
from stark_ros.tracking.settings import TrackerSettings
from stark_ros.training.augmentation import CropAugmenter
from stark_ros.training.config import Augmentation

# Smallest ground-truth side (pixels) worth training on; smaller or NaN boxes are skipped.
MIN_BOX_SIDE = 2.0
# Epoch index of the fixed validation pairs (never one of a run's training epochs).
VALIDATION_EPOCH = 1_000_000


def valid_frames(seq: Sequence) -> np.ndarray:
    """Indices of frames with a usable box (finite, not degenerate)."""
    b = np.asarray(seq.boxes, dtype=np.float64).reshape(-1, 4)
    ok = np.all(np.isfinite(b), axis=1)
    ok[ok] &= (b[ok, 2] >= MIN_BOX_SIDE) & (b[ok, 3] >= MIN_BOX_SIDE)
    return np.flatnonzero(ok)


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
        self.augmenter = CropAugmenter(settings, aug)
        self.max_gap = int(max_gap)
        self.num_templates = int(num_templates)
        self.negative_prob = float(negative_prob)
        self.negative_same_frame_prob = float(negative_same_frame_prob)

    # ---------------------------------------------------------------------------- sampling
    def _pick_sequence(self, rng) -> int:
        members = self.by_source[int(rng.choice(len(self.by_source), p=self.source_prob))]
        return int(members[int(rng.integers(len(members)))])

    def _pick_frames(self, rng, si: int) -> tuple[list[int], int]:
        return pick_frames(rng, self.valid[si], self.max_gap, self.num_templates)

    def __getitem__(self, index: int) -> dict:
        rng = self.sample_rng(index)
        augmenter, a = self.augmenter, self.augmenter.aug
        si = self._pick_sequence(rng)
        seq = self.sequences[si]
        template_frames, search_frame = self._pick_frames(rng, si)
        gray = bool(rng.random() < a.grayscale_prob)
        flip = bool(rng.random() < a.flip_prob)
        sample = {"template_images": [], "template_masks": []}
        for f in template_frames:
            crop, in_crop = augmenter.positive_crop(rng, seq, f, augmenter.template)
            img, mask, _ = augmenter.finish(crop, in_crop, augmenter.template.size,
                                            augmenter.draw_photometric(rng, gray, flip))
            sample["template_images"].append(img)
            sample["template_masks"].append(mask)
        negative, (crop, in_crop) = self._search_crop(rng, si, search_frame)
        img, mask, box = augmenter.finish(crop, in_crop, augmenter.search.size,
                                          augmenter.draw_photometric(rng, gray, flip))
        sample.update(search_image=img, search_mask=mask,
                      box_xyxy=torch.tensor(xywh_to_xyxy(box), dtype=torch.float32),
                      label=torch.tensor(0.0 if negative else 1.0))
        return sample

    def _search_crop(self, rng, si: int, search_frame: int):
        """(negative, (crop, target box in it)): with ``negative_prob`` a crop without the target
        (the same frame away from it, else another sequence's frame), otherwise around the target."""
        augmenter, seq = self.augmenter, self.sequences[si]
        negative = self.negative_prob > 0 and rng.random() < self.negative_prob
        found = None
        if negative and rng.random() < self.negative_same_frame_prob:
            found = augmenter.same_frame_negative(rng, seq, search_frame)
        if negative and found is None and len(self.sequences) > 1:
            other = int(rng.integers(len(self.sequences) - 1))
            other += other >= si  # any sequence but this one
            oframe = int(self.valid[other][int(rng.integers(len(self.valid[other])))])
            found = augmenter.positive_crop(rng, self.sequences[other], oframe, augmenter.search)
        if found is None:
            negative = False
            found = augmenter.positive_crop(rng, seq, search_frame, augmenter.search)
        return negative, found


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
