"""Named splits of the shared data: the validation videos of ``shared/data/train``.

Held out of training by the default recipe (``training/configs/stark_lite_corr_st1.yaml``,
``data.validation``; a test checks the two agree). Epochs, recipes and lost thresholds are chosen
on them; ``shared/data/sot`` is only ever scored, once per finished model.
"""

TRAIN_VALIDATION = ("uav_person11", "vot_basketball", "uav_car10", "dtb70_gull1", "uavdt_s0601", "otb_david",
                    "otb_skating1", "otb_bolt2", "uav123_person9", "uav123_car14")
# The videos of shared/data/train that made up the whole training set before it grew to 61.
TRAIN_FIRST_22 = ("uav_building4", "uav_person12_1", "uav_truck4_1", "uav_truck4_2", "uav_wakeboard10",
                  "uav_person11", "uav_wakeboard3", "uav_group1_4", "uav_bike1", "uav_car16_1", "vot_basketball",
                  "vot_bolt1", "vot_car1", "vot_zebrafish1", "uav_group1_3", "uav_group2_2", "uav_building5",
                  "uav_car10", "uav_truck2", "dtb70_gull2", "dtb70_mountainbike6", "uavdt_s1301")
