"""The node's re-detection parameters (ROS-free): left at their defaults they keep the model's own
settings; a value set overrides only its field, and 0 crops (re-detection off) is a real choice."""

from stark_ros.node.parameters import PARAMETERS, REDETECT_PARAMETERS, redetect_overrides, redetect_settings
from stark_ros.tracking.redetect import RedetectSettings

MODEL = RedetectSettings(crops_per_frame=6, every_frames=2, confirm_frames=4, candidate_threshold=0.7)


def test_defaults_keep_the_models_own_settings():
    defaults = {name: PARAMETERS[name].default for name in REDETECT_PARAMETERS}
    assert redetect_overrides(defaults) == {}
    assert redetect_settings(MODEL, defaults) == MODEL
    # One parameter per tunable a planner may want to change.
    assert {name.removeprefix("redetect_") for name in REDETECT_PARAMETERS} == {
        "crops_per_frame", "every_frames", "confirm_frames", "candidate_threshold"}


def test_a_value_set_overrides_its_field_only_and_zero_crops_switch_it_off():
    values = {name: PARAMETERS[name].default for name in REDETECT_PARAMETERS}
    values.update(redetect_crops_per_frame=0, redetect_candidate_threshold=0.9)
    chosen = redetect_settings(MODEL, values)
    assert not chosen.enabled and chosen.candidate_threshold == 0.9
    assert (chosen.every_frames, chosen.confirm_frames) == (MODEL.every_frames, MODEL.confirm_frames)
