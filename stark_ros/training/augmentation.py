"""The crops of a training sample and their augmentation: one object, used by the live dataset
(:class:`~stark_ros.training.data.PairDataset`) and by the feature cache alike.

Templates are cut around their ground-truth box, search crops around a jittered box (centre and
log-normal scale jitter, official STARK), all with the one crop of :mod:`stark_ros.core.geometry`.
Each crop then gets a photometric transform (grayscale, brightness, per-channel colour, blur) and
an optional horizontal flip, and comes out normalised with the tracker's mean and std, its padding
mask beside it and the box in crop pixels / crop size.

Every random choice is drawn from the generator the caller passes, in a fixed order: a sample is a
pure function of the caller's seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from stark_ros.core.boxes import centres, cxcywh_to_xywh, xywh_to_xyxy
from stark_ros.core.geometry import Crop, crop_around, normalize_patch
from stark_ros.datasets import Sequence
from stark_ros.tracking.settings import TrackerSettings
from stark_ros.training.config import Augmentation

# A jittered positive search crop must keep at least this share of the target's area inside.
MIN_VISIBLE_FRACTION = 0.5
# A same-frame negative may show at most this share of the target's area.
MAX_NEGATIVE_VISIBLE_FRACTION = 0.0
PIXEL_RANGE = (0.0, 255.0)
BLUR_MIN_SIGMA = 0.1
# A jittered box narrower than this (pixels) cannot be cropped around; it is drawn again.
MIN_JITTERED_SIDE = 1.0


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


@dataclass(frozen=True)
class Cut:
    """How one kind of crop is cut: context factor, side in pixels, and the jitter of its box."""

    factor: float
    size: int
    center_jitter: float
    scale_jitter: float


@dataclass
class Photometric:
    """Colour transform drawn once per crop (grayscale and flip are shared by a whole sample)."""

    gray: bool
    flip: bool
    brightness: float
    color: np.ndarray
    blur_sigma: float


class CropAugmenter:
    """Cuts template and search crops of a sequence's frames and augments them (see the module
    docstring). ``template`` and ``search`` are the two :class:`Cut` s."""

    def __init__(self, settings: TrackerSettings, aug: Augmentation):
        self.settings = settings
        self.aug = aug
        self.template = Cut(settings.template_factor, settings.template_size, aug.template_center_jitter,
                            aug.template_scale_jitter)
        self.search = Cut(settings.search_factor, settings.search_size, aug.search_center_jitter,
                          aug.search_scale_jitter)

    def draw_photometric(self, rng: np.random.Generator, gray: bool, flip: bool) -> Photometric:
        a = self.aug
        brightness = float(rng.uniform(max(0.0, 1 - a.brightness), 1 + a.brightness)) if a.brightness > 0 else 1.0
        color = (rng.uniform(max(0.0, 1 - a.color), 1 + a.color, size=3) if a.color > 0 else np.ones(3))
        sigma = float(rng.uniform(BLUR_MIN_SIGMA, a.blur_max_sigma)) if rng.random() < a.blur_prob else 0.0
        return Photometric(gray=gray, flip=flip, brightness=brightness, color=color, blur_sigma=sigma)

    @staticmethod
    def _apply_photometric(patch: np.ndarray, t: Photometric) -> np.ndarray:
        out = patch
        if t.gray:
            out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        out = out.astype(np.float32) * (t.brightness * t.color).astype(np.float32)
        if t.blur_sigma > 0:
            out = cv2.GaussianBlur(out, (0, 0), t.blur_sigma)
        out = np.clip(out, *PIXEL_RANGE).astype(np.uint8)
        return out[:, ::-1] if t.flip else out

    def finish(self, crop: Crop, box_in_crop: np.ndarray, size: int, t: Photometric):
        """A cut crop -> (normalised CHW image, padding mask, box x y w h / ``size``), transformed by ``t``."""
        patch = self._apply_photometric(crop.patch, t)
        mask = crop.pad_mask[:, ::-1] if t.flip else crop.pad_mask
        if t.flip:
            box_in_crop = np.array([size - box_in_crop[0] - box_in_crop[2], box_in_crop[1],
                                    box_in_crop[2], box_in_crop[3]])
        img = normalize_patch(np.ascontiguousarray(patch), self.settings.mean, self.settings.std)[0]
        return torch.from_numpy(img), torch.from_numpy(np.ascontiguousarray(mask)), box_in_crop / size

    def positive_crop(self, rng: np.random.Generator, seq: Sequence, frame_idx: int, cut: Cut,
                      frame: np.ndarray | None = None) -> tuple[Crop, np.ndarray]:
        """Crop around a jittered box that keeps most of the target (drawn again when not); returns
        the crop and the target's box in it. ``frame``: the decoded image when the caller has it
        already (several crops of one frame)."""
        frame = seq.frame(frame_idx) if frame is None else frame
        gt = seq.boxes[frame_idx]
        if cut.center_jitter > 0 or cut.scale_jitter > 0:
            for _ in range(self.aug.max_resample):
                jittered = jitter_box(rng, gt, cut.center_jitter, cut.scale_jitter)
                if min(jittered[2], jittered[3]) < MIN_JITTERED_SIDE:
                    continue
                crop = crop_around(frame, jittered, cut.factor, cut.size)
                in_crop = crop.box_to_crop(gt)
                if visible_fraction(in_crop, cut.size) >= MIN_VISIBLE_FRACTION:
                    return crop, in_crop
        crop = crop_around(frame, gt, cut.factor, cut.size)
        return crop, crop.box_to_crop(gt)

    def same_frame_negative(self, rng: np.random.Generator, seq: Sequence,
                            frame_idx: int) -> tuple[Crop, np.ndarray] | None:
        """A search crop of the target's scale, from the same frame, that does not show the target;
        None when the frame is too small to leave it out."""
        cut = self.search
        frame = seq.frame(frame_idx)
        height, width = frame.shape[:2]
        gt = seq.boxes[frame_idx]
        for _ in range(self.aug.max_resample):
            box = jitter_box(rng, gt, 0.0, cut.scale_jitter)
            if min(box[2], box[3]) < MIN_JITTERED_SIDE:
                continue
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            box[:2] = (cx - box[2] / 2, cy - box[3] / 2)
            crop = crop_around(frame, box, cut.factor, cut.size)
            in_crop = crop.box_to_crop(gt)
            if visible_fraction(in_crop, cut.size) <= MAX_NEGATIVE_VISIBLE_FRACTION:
                return crop, in_crop
        return None

    def centred_crop(self, frame: np.ndarray, width: float, height: float) -> Crop:
        """A search crop around the image centre at a box size of ``width`` x ``height`` (an
        absence: the frame has no target box, the size comes from the nearest frame that has one)."""
        h, w = frame.shape[:2]
        cut = self.search
        return crop_around(frame, cxcywh_to_xywh((w / 2, h / 2, width, height)), cut.factor, cut.size)
