"""ONNX Runtime sessions for the exported STARK graphs: provider choice (TensorRT -> CUDA -> CPU),
reporting of the providers really in use, metadata checks with clear errors."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stark_ros.tracking import model_metadata as md

LOG = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_PROVIDERS = (TENSORRT, CUDA, CPU)
GPU_PROVIDERS = (TENSORRT, CUDA)
DEFAULT_TRT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stark_ros" / "trt_engines"
GRAPH_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class ModelLoadError(RuntimeError):
    """A model file that is missing, corrupt, or not a stark_ros export; says which and why."""


@dataclass(frozen=True)
class RuntimeOptions:
    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    trt_fp16: bool = True
    trt_engine_cache_dir: str = str(DEFAULT_TRT_CACHE)
    # 0 lets ONNX Runtime choose (one thread per physical core).
    intra_op_threads: int = 0
    graph_optimization: str = "all"
    warmup: bool = True

    def __post_init__(self):
        if self.graph_optimization not in GRAPH_OPTIMIZATION:
            raise ValueError(f"graph_optimization must be one of {sorted(GRAPH_OPTIMIZATION)}, "
                             f"got {self.graph_optimization!r}")
        if not self.providers:
            raise ValueError("at least one execution provider is needed")
        if self.intra_op_threads < 0:
            raise ValueError("intra_op_threads must be >= 0")


def _provider_list(options: RuntimeOptions) -> list:
    available = set(ort.get_available_providers())
    chosen = []
    for name in options.providers:
        if name not in available:
            continue
        if name == TENSORRT:
            Path(options.trt_engine_cache_dir).mkdir(parents=True, exist_ok=True)
            chosen.append((name, {"trt_fp16_enable": options.trt_fp16, "trt_engine_cache_enable": True,
                                  "trt_engine_cache_path": options.trt_engine_cache_dir}))
        else:
            chosen.append(name)
    if not chosen:
        # Requests for providers this onnxruntime build lacks still get a working session.
        chosen.append(CPU)
    return chosen


class GraphSession:
    """One exported graph: its session, metadata and I/O names."""

    def __init__(self, path: Path, expected_graph: str, options: RuntimeOptions):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: model file not found")
        so = ort.SessionOptions()
        so.graph_optimization_level = GRAPH_OPTIMIZATION[options.graph_optimization]
        so.intra_op_num_threads = options.intra_op_threads
        so.log_severity_level = 3  # ORT's own warnings about provider fallbacks are reported by us, once
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=so, providers=_provider_list(options))
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise ModelLoadError(f"{self.path}: not a loadable ONNX model ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.info = md.ModelInfo.from_metadata(meta, str(self.path))
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
        if meta.get(md.KEY_GRAPH) != expected_graph:
            raise ModelLoadError(f"{self.path}: is the {meta.get(md.KEY_GRAPH)!r} graph, expected {expected_graph!r}")
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = tuple(self.session.get_providers())
        self._binding = CUDA in self.providers or TENSORRT in self.providers

    def require_inputs(self, names) -> None:
        missing = [n for n in names if n not in self.input_names]
        if missing:
            raise ModelLoadError(f"{self.path}: graph inputs {self.input_names} lack {missing}")

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if not self._binding:
            return self.session.run(None, feeds)
        # On GPUs, IO binding lets ORT place outputs without an extra host round trip per tensor.
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.output_names:
            binding.bind_output(name)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def report_providers(requested: tuple[str, ...], active: tuple[str, ...], log=LOG) -> None:
    """Say once, clearly, when a requested GPU provider is not the one running the model."""
    wanted_gpu = [p for p in requested if p in GPU_PROVIDERS]
    if wanted_gpu and not any(p in active for p in GPU_PROVIDERS):
        available = ort.get_available_providers()
        why = ("this onnxruntime build has no GPU providers (install onnxruntime-gpu)"
               if not any(p in available for p in GPU_PROVIDERS)
               else "the GPU providers failed to start (CUDA/cuDNN/TensorRT libraries missing or no GPU)")
        log.warning("running STARK on the CPU: requested %s but %s; active providers: %s",
                    ", ".join(wanted_gpu), why, ", ".join(active))
    else:
        log.info("ONNX Runtime providers in use: %s", ", ".join(active))
