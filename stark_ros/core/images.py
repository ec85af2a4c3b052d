"""sensor_msgs/Image and CompressedImage <-> RGB numpy frames, without ROS or cv_bridge.

The converter works on anything with the message's fields (``encoding``, ``height``, ``width``,
``step``, ``is_bigendian``, ``data``; ``format`` and ``data`` for compressed images), so it is
tested without rclpy. The node prefers cv_bridge when it is installed (see :func:`make_converter`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

# Frames with more pixels than this are refused before any decoding (the node's `max_image_pixels`
# parameter; default: 4096 x 4096, larger than any camera the tracker is meant for). A 292 KB PNG
# can hold 10000 x 10000 pixels: 300 MB decoded, per buffered frame.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
UINT16_TO_UINT8 = 1.0 / 256.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
JPEG_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# JPEG markers without a length field (start/end of image, restart markers, TEM).
JPEG_STANDALONE_MARKERS = frozenset({0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)})


def compressed_size(data) -> tuple[int, int] | None:
    """(width, height) read from a PNG or JPEG header, without decoding; None when not found."""
    mv = memoryview(data).cast("B")
    if bytes(mv[:len(PNG_SIGNATURE)]) == PNG_SIGNATURE:
        head = bytes(mv[:24])
        if len(head) < 24 or head[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if bytes(mv[:2]) != JPEG_SOI:
        return None
    i = 2
    while i + 4 <= len(mv):
        if mv[i] != 0xFF:
            return None
        marker = mv[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker in JPEG_STANDALONE_MARKERS:
            i += 2
            continue
        length = (mv[i + 2] << 8) | mv[i + 3]
        if marker in JPEG_SOF_MARKERS:
            if i + 9 > len(mv):
                return None
            height = (mv[i + 5] << 8) | mv[i + 6]
            width = (mv[i + 7] << 8) | mv[i + 8]
            return width, height
        if marker == 0xDA:          # start of scan before any frame header: not a valid JPEG
            return None
        i += 2 + length
    return None


def _buffer(data):
    """The message's bytes without a copy where they support the buffer protocol (rclpy gives
    ``array.array`` for ``uint8[]``), else as bytes."""
    try:
        memoryview(data)
        return data
    except TypeError:
        return bytes(data)


class ImageConversionError(ValueError):
    """A message that cannot be turned into an RGB frame; the message says why."""


@dataclass(frozen=True)
class _Encoding:
    channels: int
    dtype: np.dtype
    to_rgb: int | None  # cv2 colour conversion code, None when already RGB


ENCODINGS = {
    "rgb8": _Encoding(3, np.dtype(np.uint8), None),
    "bgr8": _Encoding(3, np.dtype(np.uint8), cv2.COLOR_BGR2RGB),
    "rgba8": _Encoding(4, np.dtype(np.uint8), cv2.COLOR_RGBA2RGB),
    "bgra8": _Encoding(4, np.dtype(np.uint8), cv2.COLOR_BGRA2RGB),
    "mono8": _Encoding(1, np.dtype(np.uint8), cv2.COLOR_GRAY2RGB),
    "8UC1": _Encoding(1, np.dtype(np.uint8), cv2.COLOR_GRAY2RGB),
    "8UC3": _Encoding(3, np.dtype(np.uint8), cv2.COLOR_BGR2RGB),
    "mono16": _Encoding(1, np.dtype(np.uint16), cv2.COLOR_GRAY2RGB),
    "16UC1": _Encoding(1, np.dtype(np.uint16), cv2.COLOR_GRAY2RGB),
    "rgb16": _Encoding(3, np.dtype(np.uint16), None),
    "bgr16": _Encoding(3, np.dtype(np.uint16), cv2.COLOR_BGR2RGB),
}


class ImageConverter:
    """One converter for raw and compressed images (the cv_bridge subset a tracker needs)."""

    name = "stark_ros"

    def __init__(self, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self.max_pixels = int(max_pixels)

    def check_size(self, width: int, height: int) -> None:
        """Refuse empty and too large images from their header, before any decoding."""
        if height <= 0 or width <= 0:
            raise ImageConversionError(f"empty image ({width}x{height})")
        if height * width > self.max_pixels:
            raise ImageConversionError(f"image of {width}x{height} px exceeds max_image_pixels "
                                       f"({self.max_pixels} px)")

    def image_to_rgb(self, msg) -> np.ndarray:
        enc = ENCODINGS.get(msg.encoding)
        if enc is None:
            raise ImageConversionError(f"unsupported encoding {msg.encoding!r} (supported: {', '.join(ENCODINGS)})")
        height, width, step = int(msg.height), int(msg.width), int(msg.step)
        self.check_size(width, height)
        row_bytes = width * enc.channels * enc.dtype.itemsize
        if step < row_bytes:
            raise ImageConversionError(f"step {step} is smaller than a row ({row_bytes} bytes for {width} px "
                                       f"of {msg.encoding})")
        data = _buffer(msg.data)
        if len(data) < step * height:
            raise ImageConversionError(f"truncated data: {len(data)} bytes, expected step*height = {step * height}")
        rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)[:, :row_bytes]
        dtype = enc.dtype.newbyteorder(">" if msg.is_bigendian else "<")
        pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, enc.channels)
        if enc.dtype == np.uint16:
            pixels = (pixels.astype(np.float32) * UINT16_TO_UINT8).astype(np.uint8)
        if enc.to_rgb is not None:
            return cv2.cvtColor(pixels, enc.to_rgb)
        return np.ascontiguousarray(pixels)

    def compressed_to_rgb(self, msg) -> np.ndarray:
        buf = np.frombuffer(_buffer(msg.data), dtype=np.uint8)
        if buf.size == 0:
            raise ImageConversionError("empty compressed image")
        size = compressed_size(buf)
        if size is None:
            raise ImageConversionError(f"cannot read the image size from the header of the compressed image "
                                       f"(format {msg.format!r}, {buf.size} bytes; PNG and JPEG are supported)")
        self.check_size(*size)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ImageConversionError(f"cannot decode the compressed image (format {msg.format!r}, {buf.size} bytes)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    @staticmethod
    def rgb_to_fields(rgb: np.ndarray, encoding: str = "rgb8") -> dict:
        """An RGB frame -> the fields of a sensor_msgs/Image in ``encoding`` (for publishers)."""
        enc = ENCODINGS.get(encoding)
        if enc is None:
            raise ImageConversionError(f"unsupported encoding {encoding!r}")
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ImageConversionError(f"expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
        inverse = {"bgr8": cv2.COLOR_RGB2BGR, "8UC3": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
                   "bgra8": cv2.COLOR_RGB2BGRA, "mono8": cv2.COLOR_RGB2GRAY, "8UC1": cv2.COLOR_RGB2GRAY,
                   "mono16": cv2.COLOR_RGB2GRAY, "16UC1": cv2.COLOR_RGB2GRAY, "bgr16": cv2.COLOR_RGB2BGR}
        pixels = cv2.cvtColor(rgb, inverse[encoding]) if encoding in inverse else rgb
        if enc.dtype == np.uint16:
            pixels = pixels.astype(np.uint16) * 256
        pixels = np.ascontiguousarray(pixels.astype(enc.dtype.newbyteorder("<")))
        height, width = rgb.shape[:2]
        return {"encoding": encoding, "height": height, "width": width, "is_bigendian": 0,
                "step": width * enc.channels * enc.dtype.itemsize, "data": pixels.tobytes()}

    @staticmethod
    def rgb_to_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ImageConversionError("JPEG encoding failed")
        return buf.tobytes()


class CvBridgeConverter(ImageConverter):
    """Raw images through cv_bridge (ROS installs); compressed ones as above."""

    name = "cv_bridge"

    def __init__(self, bridge, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        super().__init__(max_pixels)
        self._bridge = bridge

    def image_to_rgb(self, msg) -> np.ndarray:
        self.check_size(int(msg.width), int(msg.height))
        try:
            return self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception as exc:  # cv_bridge raises CvBridgeError and assorted numpy errors
            raise ImageConversionError(f"cv_bridge: {exc}") from None


def make_converter(prefer_cv_bridge: bool = True, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageConverter:
    if prefer_cv_bridge:
        try:
            from cv_bridge import CvBridge
            return CvBridgeConverter(CvBridge(), max_pixels)
        except Exception:  # not installed, or a broken build (PyPI's ROS 1 cv-bridge with numpy 2)
            pass
    return ImageConverter(max_pixels)
