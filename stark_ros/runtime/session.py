"""ONNX Runtime sessions for the exported STARK graphs: provider choice (TensorRT -> CUDA -> CPU),
reporting of the providers really in use, metadata checks with clear errors."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from collections import Counter
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


# Arithmetic of the network on a GPU (the CPU provider computes float32 whatever is asked):
#   fp32  exact float32, the CPU's boxes: CUDA with TF32 off; TensorRT is left out, because it builds
#         engines with TF32 allowed and ONNX Runtime has no option to forbid it;
#   tf32  float32 storage, MatMul/Conv in TF32 on Ampere and newer (CUDA's and TensorRT's default);
#   fp16  float16: TensorRT FP16 engines, or the model's float16 graphs on CUDA.
PRECISION_FP32 = "fp32"
PRECISION_TF32 = "tf32"
PRECISION_FP16 = "fp16"
PRECISIONS = (PRECISION_FP32, PRECISION_TF32, PRECISION_FP16)
CROPS_AUTO, CROPS_GRAPH, CROPS_HOST = CROP_MODES = ("auto", "graph", "host")
# ONNX Runtime's profile names each node's kernel event "<node>_kernel_time".
PROFILE_KERNEL_SUFFIX = "_kernel_time"
# ONNX Runtime's default logger severity (warning), restored after a quiet session start.
ORT_DEFAULT_LOG_SEVERITY = 2
ORT_SILENT_LOG_SEVERITY = 4


@dataclass(frozen=True)
class RuntimeOptions:
    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    precision: str = PRECISION_FP32
    trt_engine_cache_dir: str = str(DEFAULT_TRT_CACHE)
    # 0 lets ONNX Runtime choose (one thread per physical core).
    intra_op_threads: int = 0
    # Off: between two network calls the tracker crops and scores on the same cores, where spinning
    # worker threads would take the CPU from it.
    intra_op_spinning: bool = False
    graph_optimization: str = "all"
    warmup: bool = True
    # Where the crops are cut: "auto" on the GPU where the network runs on one (the crop graph,
    # stark_ros.runtime.crops), else with numpy/OpenCV; "graph" the crop graph on any provider
    # (the CPU too: the same numbers); "host" numpy/OpenCV always.
    crops: str = "auto"

    def __post_init__(self):
        if self.graph_optimization not in GRAPH_OPTIMIZATION:
            raise ValueError(f"graph_optimization must be one of {sorted(GRAPH_OPTIMIZATION)}, "
                             f"got {self.graph_optimization!r}")
        if self.crops not in CROP_MODES:
            raise ValueError(f"crops must be one of {', '.join(CROP_MODES)}, got {self.crops!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not self.providers:
            raise ValueError("at least one execution provider is needed")
        if self.intra_op_threads < 0:
            raise ValueError("intra_op_threads must be >= 0")


def provider_options(name: str, options: RuntimeOptions) -> dict[str, str]:
    """The ONNX Runtime options of provider ``name`` that carry ``options.precision`` (and the
    TensorRT engine cache); empty for providers without any."""
    if name == CUDA:
        return {"use_tf32": "1" if options.precision == PRECISION_TF32 else "0"}
    if name == TENSORRT:
        return {"trt_fp16_enable": "1" if options.precision == PRECISION_FP16 else "0",
                "trt_engine_cache_enable": "1", "trt_engine_cache_path": options.trt_engine_cache_dir}
    return {}


def provider_list(options: RuntimeOptions, exclude=()) -> list[tuple[str, dict[str, str]]]:
    """(provider, options) to ask ONNX Runtime for, in the caller's order: those this build has,
    TensorRT only where the precision allows it, and the CPU when nothing else is left."""
    available = set(ort.get_available_providers())
    chosen = []
    for name in options.providers:
        if name not in available or name in exclude or (name == TENSORRT and options.precision == PRECISION_FP32):
            continue
        if name == TENSORRT:
            Path(options.trt_engine_cache_dir).mkdir(parents=True, exist_ok=True)
        chosen.append((name, provider_options(name, options)))
    if not chosen:
        # Requests for providers this onnxruntime build lacks still get a working session.
        chosen.append((CPU, {}))
    return chosen


@contextlib.contextmanager
def _quiet_ort_start():
    """ONNX Runtime logs its own error block (to stderr, once per session) when a provider's
    libraries fail to load, then falls back; the package says what happened once, in words
    (:func:`report_providers`), so ORT's block is kept out while a session starts. Some ONNX Runtime
    versions also print an "EP Error ... Falling back" block on stdout: kept out too, and logged at
    debug level."""
    ort.set_default_logger_severity(ORT_SILENT_LOG_SEVERITY)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        ort.set_default_logger_severity(ORT_DEFAULT_LOG_SEVERITY)
        if printed.getvalue().strip():
            LOG.debug("ONNX Runtime while starting a session: %s", printed.getvalue().strip())


def session_options(options: RuntimeOptions) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = GRAPH_OPTIMIZATION[options.graph_optimization]
    so.intra_op_num_threads = options.intra_op_threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.intra_op_spinning else "0")
    # Fatal only: what goes wrong in a call raises; what happened at start (provider fallbacks) the
    # package reports itself, once (report_providers); ONNX Runtime's own lines would say it twice.
    so.log_severity_level = ORT_SILENT_LOG_SEVERITY
    return so


def float16_model_bytes(fp32_path: Path) -> bytes:
    """The float16 twin of an exported graph, converted in memory for a model folder that does not
    ship one (needs the ``onnx`` package; ``python -m stark_ros.export.float16 DIR`` writes them once)."""
    try:
        from stark_ros.export.float16 import float16_model
    except ImportError as exc:
        raise ModelLoadError(f"{fp32_path}: precision fp16 on CUDA needs the float16 graph "
                             f"{md.fp16_file(fp32_path.name)} beside it, or the onnx package to convert it "
                             f"({exc}); write it with python -m stark_ros.export.float16 {fp32_path.parent}") from None
    import onnx

    LOG.info("%s: no %s beside it; converting to float16 in memory", fp32_path, md.fp16_file(fp32_path.name))
    try:
        return float16_model(onnx.load(str(fp32_path))).SerializeToString()
    except (OSError, ValueError, onnx.onnx_cpp2py_export.checker.ValidationError) as exc:
        raise ModelLoadError(f"{fp32_path}: no float16 graph for precision fp16 ({exc}); write one with "
                             f"python -m stark_ros.export.float16 {fp32_path.parent}") from None


class GraphSession:
    """One exported graph: its session, metadata and I/O names."""

    def __init__(self, path: Path, expected_graph: str, options: RuntimeOptions):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: model file not found")
        self.options = options
        self.session = self._start(self.path, provider_list(options))
        wanted_tf32 = provider_options(CUDA, options)["use_tf32"]
        if CUDA in self.session.get_providers() and \
                self.session.get_provider_options()[CUDA].get("use_tf32") != wanted_tf32:
            # ONNX Runtime's own fallback (after a provider failed to start) drops the options given:
            # start again on CUDA with them, so that the precision is the one asked for.
            self.session = self._start(self.path, provider_list(options, exclude=(TENSORRT,)))
        # Whether the session runs the float16 twin of the graph (precision fp16 on CUDA).
        self.float16 = (options.precision == PRECISION_FP16 and CUDA in self.session.get_providers()
                        and TENSORRT not in self.session.get_providers())
        if self.float16:
            # CUDA computes in the precision of the graph: run the model's float16 twin.
            self.session = self._start(self.path.with_name(md.fp16_file(self.path.name)),
                                       provider_list(options, exclude=(TENSORRT,)), fp16_of=self.path)
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
        self.provider_options = self.session.get_provider_options()
        self._binding = CUDA in self.providers or TENSORRT in self.providers

    def _start(self, path: Path, providers, fp16_of: Path | None = None, so=None):
        """A session of ``path`` (for ``fp16_of``: the float16 twin, converted in memory where the
        model folder has none) on ``providers``; remembered, so that :meth:`nodes_by_provider` can
        make its twin."""
        model = str(path)
        if fp16_of is not None and not path.is_file():
            model = float16_model_bytes(fp16_of)
        self._model, self._requested = model, providers
        try:
            with _quiet_ort_start():
                return ort.InferenceSession(model, sess_options=so or session_options(self.options),
                                            providers=[p for p, _ in providers],
                                            provider_options=[o for _, o in providers])
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise ModelLoadError(f"{path}: not a loadable ONNX model ({first})") from None

    def nodes_by_provider(self, feeds: dict[str, np.ndarray], op_types=None) -> dict[str, int]:
        """How many nodes of this graph each provider really ran, from ONNX Runtime's profile of one
        call on ``feeds`` (numpy, or ``OrtValue``s, read back first) in a session made like this one
        (the registered providers say only where nodes may run). With ``op_types``, only nodes of
        those operators count (e.g. the compute-heavy Conv and MatMul, where shape arithmetic runs on
        the CPU by design)."""
        so = session_options(self.options)
        so.enable_profiling = True
        with tempfile.TemporaryDirectory(prefix="stark_ros_profile_") as folder:
            so.profile_file_prefix = str(Path(folder) / "profile")
            with _quiet_ort_start():
                twin = ort.InferenceSession(self._model, sess_options=so, providers=[p for p, _ in self._requested],
                                            provider_options=[o for _, o in self._requested])
            twin.run(None, {name: value.numpy() if isinstance(value, ort.OrtValue) else value
                            for name, value in feeds.items()})
            events = json.loads(Path(twin.end_profiling()).read_text())
        return dict(Counter(e["args"]["provider"] for e in events
                            if e.get("cat") == "Node" and "provider" in e.get("args", {})
                            and e.get("name", "").endswith(PROFILE_KERNEL_SUFFIX)
                            and (op_types is None or e["args"].get("op_name") in op_types)))

    def require_inputs(self, names) -> None:
        missing = [n for n in names if n not in self.input_names]
        if missing:
            raise ModelLoadError(f"{self.path}: graph inputs {self.input_names} lack {missing}")

    def run(self, feeds: dict) -> list[np.ndarray]:
        """The graph's outputs on the host; a feed is a numpy array or an ``OrtValue`` already on the
        session's device (the crop graph's outputs)."""
        if not self._binding:
            return self.session.run(None, feeds)
        # On GPUs, IO binding lets ORT place outputs without an extra host round trip per tensor.
        binding = self.session.io_binding()
        for name, value in feeds.items():
            if isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(name, value)
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.output_names:
            binding.bind_output(name)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def report_providers(options: RuntimeOptions, active: tuple[str, ...], log=LOG) -> None:
    """Say once, clearly, which providers run the model and in which precision, and why a requested
    GPU provider is not among them."""
    requested = options.providers
    available = ort.get_available_providers()
    wanted_gpu = [p for p in requested if p in GPU_PROVIDERS]
    if wanted_gpu and not any(p in active for p in GPU_PROVIDERS):
        why = ("this onnxruntime build has no GPU providers (install onnxruntime-gpu)"
               if not any(p in available for p in GPU_PROVIDERS)
               else "the GPU providers failed to start (CUDA/cuDNN/TensorRT libraries missing or no GPU)")
        log.warning("running STARK on the CPU: requested %s but %s; active providers: %s",
                    ", ".join(wanted_gpu), why, ", ".join(active))
        return
    if TENSORRT in requested and TENSORRT not in active and any(p in active for p in GPU_PROVIDERS):
        if options.precision == PRECISION_FP32:
            log.info("TensorRT left out: precision %s asks for exact float32, and TensorRT builds its engines "
                     "with TF32 allowed; precision %s or %s uses it", PRECISION_FP32, PRECISION_TF32, PRECISION_FP16)
        elif TENSORRT in available:
            log.warning("TensorRT requested but it failed to start (its libraries, e.g. libnvinfer, are missing "
                        "or do not match this onnxruntime build): running on %s", ", ".join(active))
    log.info("ONNX Runtime providers in use: %s, precision %s%s", ", ".join(active), options.precision,
             "" if any(p in active for p in GPU_PROVIDERS) else " (the CPU computes float32 whatever is asked)")
