"""sensor_msgs/Image and CompressedImage <-> RGB numpy frames, without ROS or cv_bridge.

The converter works on anything with the message's fields (``encoding``, ``height``, ``width``,
``step``, ``is_bigendian``, ``data``; ``format`` and ``data`` for compressed images), so it is
tested without rclpy. The node prefers cv_bridge when it is installed (see :func:`make_converter`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Frames larger than this are refused as absurd (about a 16K x 16K image).
MAX_IMAGE_PIXELS = 1 << 28
UINT16_TO_UINT8 = 1.0 / 256.0


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

    def image_to_rgb(self, msg) -> np.ndarray:
        enc = ENCODINGS.get(msg.encoding)
        if enc is None:
            raise ImageConversionError(f"unsupported encoding {msg.encoding!r} (supported: {', '.join(ENCODINGS)})")
        height, width, step = int(msg.height), int(msg.width), int(msg.step)
        if height <= 0 or width <= 0:
            raise ImageConversionError(f"empty image ({width}x{height})")
        if height * width > MAX_IMAGE_PIXELS:
            raise ImageConversionError(f"absurd image size {width}x{height}")
        row_bytes = width * enc.channels * enc.dtype.itemsize
        if step < row_bytes:
            raise ImageConversionError(f"step {step} is smaller than a row ({row_bytes} bytes for {width} px "
                                       f"of {msg.encoding})")
        data = bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray, memoryview)) else msg.data
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
        buf = np.frombuffer(bytes(msg.data), dtype=np.uint8)
        if buf.size == 0:
            raise ImageConversionError("empty compressed image")
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ImageConversionError(f"cannot decode compressed image (format {msg.format!r}, {buf.size} bytes)")
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

    def __init__(self, bridge):
        self._bridge = bridge

    def image_to_rgb(self, msg) -> np.ndarray:
        try:
            return self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception as exc:  # cv_bridge raises CvBridgeError and assorted numpy errors
            raise ImageConversionError(f"cv_bridge: {exc}") from None


def make_converter(prefer_cv_bridge: bool = True) -> ImageConverter:
    if prefer_cv_bridge:
        try:
            from cv_bridge import CvBridge
            return CvBridgeConverter(CvBridge())
        except Exception:  # not installed, or a broken build (PyPI's ROS 1 cv-bridge with numpy 2)
            pass
    return ImageConverter()
