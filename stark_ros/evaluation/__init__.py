"""Evaluation: benchmark metrics, trackers over datasets, reports (numpy; torch only for the
PyTorch reference tracker, imported lazily)."""
