"""The ROS-free image converter: round trips for every encoding and clear errors for bad input."""

from types import SimpleNamespace

import numpy as np
import pytest

from stark_ros.core.images import ENCODINGS, ImageConversionError, ImageConverter

CONV = ImageConverter()


@pytest.fixture()
def rgb():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(7, 11, 3), dtype=np.uint8)


def msg(**fields):
    return SimpleNamespace(**fields)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "rgb16", "bgr16"])
def test_colour_round_trip_is_exact(rgb, encoding):
    assert np.array_equal(CONV.image_to_rgb(msg(**CONV.rgb_to_fields(rgb, encoding))), rgb)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1", "mono16", "16UC1"])
def test_mono_becomes_grey_rgb(rgb, encoding):
    out = CONV.image_to_rgb(msg(**CONV.rgb_to_fields(rgb, encoding)))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_padded_rows_and_big_endian(rgb):
    fields = CONV.rgb_to_fields(rgb, "rgb8")
    padded = b"".join(fields["data"][r * 33:(r + 1) * 33] + b"\xff" * 5 for r in range(7))
    assert np.array_equal(CONV.image_to_rgb(msg(**{**fields, "step": 38, "data": padded})), rgb)
    mono = (np.arange(6, dtype=np.uint16) * 1000).reshape(2, 3)
    out = CONV.image_to_rgb(msg(encoding="mono16", height=2, width=3, step=6, is_bigendian=1,
                                data=mono.astype(">u2").tobytes()))
    assert np.array_equal(out[..., 0], (mono / 256).astype(np.uint8))


@pytest.mark.parametrize("change, reason", [
    ({"encoding": "yuv422"}, "unsupported encoding"),
    ({"step": 10}, "step 10 is smaller than a row"),
    ({"data": b"\x00" * 20}, "truncated data"),
    ({"height": 0}, "empty image"),
    ({"height": 1 << 15, "width": 1 << 15}, "exceeds max_image_pixels"),
])
def test_bad_raw_images(rgb, change, reason):
    fields = {**CONV.rgb_to_fields(rgb, "rgb8"), **change}
    with pytest.raises(ImageConversionError, match=reason):
        CONV.image_to_rgb(msg(**fields))


def test_compressed_round_trip_and_garbage(rgb):
    big = np.kron(rgb, np.ones((16, 16, 1), dtype=np.uint8))  # JPEG-friendly: flat 16x16 MCUs
    out = CONV.compressed_to_rgb(msg(format="jpeg", data=CONV.rgb_to_jpeg(big, quality=100)))
    # JPEG subsamples colour, so edges between random blocks bleed; the typical pixel is exact
    # to a grey level or two, and a channel swap would be off by ~80.
    assert out.shape == big.shape and np.median(np.abs(out.astype(int) - big)) <= 2
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    decoded = CONV.compressed_to_rgb(msg(format="jpeg", data=CONV.rgb_to_jpeg(red)))
    assert decoded[..., 0].min() > 240 and decoded[..., 2].max() < 15
    with pytest.raises(ImageConversionError, match=r"cannot (decode|read the image size)"):
        CONV.compressed_to_rgb(msg(format="jpeg", data=b"\xff\xd8 not really a jpeg"))
    with pytest.raises(ImageConversionError, match="empty"):
        CONV.compressed_to_rgb(msg(format="jpeg", data=b""))


def test_every_encoding_is_covered():
    assert {"rgb8", "bgr8", "mono8", "rgba8", "bgra8", "mono16", "16UC1"} <= set(ENCODINGS)
