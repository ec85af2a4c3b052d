"""The tracker itself, numpy only (no torch, no ONNX Runtime, no ROS): the tracking policy run on any
engine (:mod:`.policy`), the lost-target logic (:mod:`.lost`), the appearance score
(:mod:`.appearance`), the tracker's settings (:mod:`.settings`) and the model-format contract
between the exporter and the runtime (:mod:`.model_metadata`)."""
