"""Benchmarks: ``python -m stark_ros.bench NAME`` runs ``stark_ros.bench.NAME.main(argv)``."""
