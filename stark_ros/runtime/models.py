"""Where models live: the default model shipped with the package, and how to name one."""

from __future__ import annotations

import os
from pathlib import Path

from stark_ros.core import locate
from stark_ros.runtime.session import ModelLoadError
from stark_ros.tracking import model_metadata as md

DEFAULT_MODEL_NAME = "default"
MODEL_ENV = "STARK_ROS_MODEL"


def default_model_dir() -> Path:
    """The model used when none is named: $STARK_ROS_MODEL, else the default model installed with
    the package (found by stark_ros.core.locate); a clear error when there is none."""
    looked = []
    if os.environ.get(MODEL_ENV):
        looked.append(str(Path(os.environ[MODEL_ENV])))
        if _is_model(Path(os.environ[MODEL_ENV])):
            return Path(os.environ[MODEL_ENV])
    try:
        installed = locate.models_dir() / DEFAULT_MODEL_NAME
        looked.append(f"{installed} (route: {locate.route()})")
        if _is_model(installed):
            return installed
    except locate.NotInstalledError as exc:
        looked.append(str(exc))
    raise ModelLoadError("no default model found (looked in: " + "; ".join(looked)
                         + f"); name one (the node's `model` parameter, or ${MODEL_ENV}) or export one with "
                           "`python -m stark_ros.export CHECKPOINT -o DIR`")


def _is_model(folder: Path) -> bool:
    return (folder / md.TEMPLATE_FILE).is_file() and (folder / md.TRACK_FILE).is_file()


def resolve_model(model: str | os.PathLike | None) -> Path:
    return Path(model) if model else default_model_dir()
