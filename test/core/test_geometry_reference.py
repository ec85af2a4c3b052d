"""The crop reproduces the official sample_target on the reference fixtures, bit for bit."""

import numpy as np

from stark_ros.core.geometry import crop_around
from stark_ros.datasets import load_simple_sequence

# The reference search crop was cut from the 40th frame (file 00000040.jpg) of otb_crossing.
REFERENCE_FRAME_INDEX = 39


def test_search_crop_matches_reference(shared, stark_reference):
    ref = np.load(stark_reference / "model_io_ST50.npz")
    seq = load_simple_sequence(shared / "data" / "sot" / "otb_crossing")
    crop = crop_around(seq.frame(REFERENCE_FRAME_INDEX), ref["search_box"], 5.0, 320)
    np.testing.assert_array_equal(crop.patch, ref["search_patch"])
    np.testing.assert_array_equal(crop.pad_mask, ref["search_mask"])
    assert crop.resize_factor == float(ref["resize_factor"])
