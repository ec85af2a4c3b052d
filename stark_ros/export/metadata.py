"""Write a model's lost-target thresholds into both of its graphs' metadata (onnx only, no torch).

The score study (``python -m stark_ros.evaluation.score_study --apply``) runs an exported model and
chooses the thresholds for its score; this puts them where the runtime reads its defaults.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from stark_ros.tracking import model_metadata as md
from stark_ros.tracking.lost import LostSettings
from stark_ros.tracking.redetect import RedetectSettings
from stark_ros.tracking.settings import TrackerSettings


def replace_metadata(proto, values: dict) -> None:
    """Make ``values`` (str -> str) the whole of an ONNX model's ``metadata_props``."""
    del proto.metadata_props[:]
    for key, value in values.items():
        proto.metadata_props.add(key=key, value=value)


def _rewrite_metadata(model_dir, update) -> list[Path]:
    """``update(values)`` on the metadata of ``template.onnx`` and ``track.onnx`` (a dict it changes in
    place), written back; the paths written."""
    import onnx

    written = []
    for name in (md.TEMPLATE_FILE, md.TRACK_FILE):
        path = Path(model_dir) / name
        proto = onnx.load(str(path))
        values = {p.key: p.value for p in proto.metadata_props}
        update(values)
        replace_metadata(proto, values)
        onnx.save(proto, str(path))
        written.append(path)
    return written


def write_lost_settings(model_dir, lost: LostSettings, source: str, score_source: str | None = None,
                        **tracker_changes) -> list[Path]:
    """Set (or replace) :data:`md.KEY_LOST_SETTINGS` in ``template.onnx`` and ``track.onnx``, and
    with ``score_source`` (and any other ``TrackerSettings`` field given) the tracker settings there."""
    if score_source is not None:
        tracker_changes["score_source"] = score_source

    def update(values: dict) -> None:
        values[md.KEY_LOST_SETTINGS] = json.dumps(lost.to_dict())
        values[md.KEY_LOST_SETTINGS_SOURCE] = source
        if tracker_changes:
            settings = TrackerSettings.from_dict(json.loads(values[md.KEY_SETTINGS]))
            values[md.KEY_SETTINGS] = json.dumps(replace(settings, **tracker_changes).to_dict())

    return _rewrite_metadata(model_dir, update)


def write_redetect_settings(model_dir, redetect: RedetectSettings, source: str) -> list[Path]:
    """Set (or replace) :data:`md.KEY_REDETECT_SETTINGS` in ``template.onnx`` and ``track.onnx``."""
    def update(values: dict) -> None:
        values[md.KEY_REDETECT_SETTINGS] = json.dumps(redetect.to_dict())
        values[md.KEY_REDETECT_SETTINGS_SOURCE] = source

    return _rewrite_metadata(model_dir, update)
