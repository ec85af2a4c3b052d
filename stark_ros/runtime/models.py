"""Where models live: the default model shipped with the package, and how to name one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from stark_ros.core import model_metadata as md
from stark_ros.runtime.session import ModelLoadError

DEFAULT_MODEL_NAME = "default"
MODEL_ENV = "STARK_ROS_MODEL"
PACKAGE = "stark_ros"


def _candidate_dirs() -> list[Path]:
    out = []
    if os.environ.get(MODEL_ENV):
        out.append(Path(os.environ[MODEL_ENV]))
    try:  # a ROS 2 install (colcon or the wheels): share/stark_ros/models/default
        from ament_index_python.packages import get_package_share_directory

        out.append(Path(get_package_share_directory(PACKAGE)) / "models" / DEFAULT_MODEL_NAME)
    except Exception:  # ament_index_python missing, or the package not in the index
        pass
    out.append(Path(sys.prefix) / "share" / PACKAGE / "models" / DEFAULT_MODEL_NAME)
    # A source checkout: <repo>/models/default beside the stark_ros package.
    out.append(Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_NAME)
    return out


def default_model_dir() -> Path:
    """The model used when none is named; a clear error when none is installed."""
    candidates = _candidate_dirs()
    for cand in candidates:
        if (cand / md.TEMPLATE_FILE).is_file() and (cand / md.TRACK_FILE).is_file():
            return cand
    raise ModelLoadError("no default model found (looked in: " + ", ".join(str(c) for c in candidates)
                         + f"); name one (the node's `model` parameter, or ${MODEL_ENV}) or export one with "
                           "`python -m stark_ros.export CHECKPOINT -o DIR`")


def resolve_model(model: str | os.PathLike | None) -> Path:
    return Path(model) if model else default_model_dir()
