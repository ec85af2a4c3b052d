"""Loading and saving STARK checkpoints in three layouts, detected automatically.

* **official** (researchmm/Stark ``*.pth.tar``): weights under ``net``; names such as
  ``backbone.0.body.layer1.0.conv1.weight`` and ``cls_head.layers.0.weight``.
* **mmtracking** (open-mmlab/mmtracking): weights under ``state_dict``; names ``backbone.*``,
  ``neck.convs.0.conv.*``, ``head.transformer.*`` (mmcv ``attentions/ffns/norms``),
  ``head.bbox_head.{tl,br}_corner_pred.*``, ``head.cls_head.*``, ``head.query_embedding``.
* **stark_ros** (ours): ``{"format": "stark_ros", "config": ModelConfig dict, "model": state_dict}``,
  self-describing, so no variant has to be named.

Every file is read with ``torch.load(weights_only=True)``: a file that would need to unpickle code
is refused, never executed.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

import stark_ros
from stark_ros.model.config import ModelConfig, get_preset
from stark_ros.model.stark import StarkModel, build_model

OUR_FORMAT = "stark_ros"
# Official STARK-S50 checkpoints name their network class this way; it is the S50 architecture.
OFFICIAL_S50_NET_TYPES = ("LittleBoy_clean_corner",)
_CORNER_BLOCKS = 4  # conv-BN-ReLU blocks per corner branch before the final 1x1 conv


class CheckpointError(RuntimeError):
    """A file that is not a loadable STARK checkpoint; the message says what is wrong."""


# ------------------------------------------------------------------------------------ name maps
def _official_to_ours(name: str) -> str:
    if name.startswith("backbone.0.body."):
        return "backbone." + name[len("backbone.0.body."):]
    if name.startswith("cls_head."):
        return "score_head." + name[len("cls_head."):]
    return name


def _ours_to_official(name: str) -> str:
    if name.startswith("backbone."):
        return "backbone.0.body." + name[len("backbone."):]
    if name.startswith("score_head."):
        return "cls_head." + name[len("score_head."):]
    return name


# (our pattern, mmtracking pattern) pairs; \1 and \2 carry layer numbers / leaf names.
_MM_RULES = [
    (r"^backbone\.(.*)$", r"backbone.\1"),
    (r"^bottleneck\.(weight|bias)$", r"neck.convs.0.conv.\1"),
    (r"^query_embed\.weight$", r"head.query_embedding.weight"),
    (r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.self_attn\.(.*)$",
     r"head.transformer.\1.layers.\2.attentions.0.attn.\3"),
    (r"^transformer\.decoder\.layers\.(\d+)\.multihead_attn\.(.*)$",
     r"head.transformer.decoder.layers.\1.attentions.1.attn.\2"),
    (r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.linear1\.(.*)$",
     r"head.transformer.\1.layers.\2.ffns.0.layers.0.0.\3"),
    (r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.linear2\.(.*)$",
     r"head.transformer.\1.layers.\2.ffns.0.layers.1.\3"),
    (r"^transformer\.decoder\.norm\.(.*)$", r"head.transformer.decoder.post_norm.\1"),
    (r"^score_head\.(.*)$", r"head.cls_head.\1"),
]


def _norm_rule(ours_idx: int) -> tuple[str, str]:
    return (rf"^transformer\.(encoder|decoder)\.layers\.(\d+)\.norm{ours_idx + 1}\.(.*)$",
            rf"head.transformer.\1.layers.\2.norms.{ours_idx}.\3")


def _corner_rules() -> list[tuple[str, str]]:
    rules = []
    for corner in ("tl", "br"):
        for i in range(_CORNER_BLOCKS):
            rules.append((rf"^box_head\.conv{i + 1}_{corner}\.0\.(.*)$",
                          rf"head.bbox_head.{corner}_corner_pred.{i}.conv.\1"))
            rules.append((rf"^box_head\.conv{i + 1}_{corner}\.1\.(.*)$",
                          rf"head.bbox_head.{corner}_corner_pred.{i}.bn.\1"))
        rules.append((rf"^box_head\.conv{_CORNER_BLOCKS + 1}_{corner}\.(.*)$",
                      rf"head.bbox_head.{corner}_corner_pred.{_CORNER_BLOCKS}.\1"))
    return rules


_MM_RULES += [_norm_rule(i) for i in range(3)] + _corner_rules()


def _rename(name: str) -> str | None:
    for pattern, repl in _MM_RULES:
        new, n = re.subn(pattern, repl, name)
        if n:
            return new
    return None


def ours_to_mmtracking(state_dict: dict) -> dict:
    out = {}
    for k, v in state_dict.items():
        new = _rename(k)
        if new is None:
            raise CheckpointError(f"no mmtracking name for parameter {k!r}")
        out[new] = v
    return out


def mmtracking_to_ours(state_dict: dict, model_keys) -> dict:
    """Rename with the inverse of the forward map of the target model's own keys; names the model
    does not know stay as they are and are reported as unexpected by the strict loader."""
    inverse = {_rename(k): k for k in model_keys}
    return {inverse.get(k, k): v for k, v in state_dict.items()}


def ours_to_official(state_dict: dict) -> dict:
    return {_ours_to_official(k): v for k, v in state_dict.items()}


# ------------------------------------------------------------------------------------- loading
def _read(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused: the file asks to unpickle code or objects that are not "
                              f"plain tensors/containers ({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'empty'})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint: top level is {type(obj).__name__}, not a dict")
    return obj


def detect_layout(ckpt: dict) -> str:
    if ckpt.get("format") == OUR_FORMAT and "model" in ckpt:
        return "stark_ros"
    if isinstance(ckpt.get("net"), dict):
        return "official"
    if isinstance(ckpt.get("state_dict"), dict) and any(k.startswith("head.") for k in ckpt["state_dict"]):
        return "mmtracking"
    raise CheckpointError(f"unknown checkpoint layout; top-level keys: {sorted(ckpt)[:10]} "
                          f"(expected 'net' (official), 'state_dict' (mmtracking) or format '{OUR_FORMAT}')")


def _guess_variant(names, layout: str, ckpt: dict) -> str:
    """Official/mmtracking files do not name their variant: read it off the weights."""
    if ckpt.get("net_type") in OFFICIAL_S50_NET_TYPES:
        return "S50"
    score_prefix, deep_prefix = (("cls_head.", "backbone.0.body.layer3.6.") if layout == "official"
                                 else ("head.cls_head.", "backbone.layer3.6."))
    if not any(k.startswith(score_prefix) for k in names):
        return "S50"
    return "ST101" if any(k.startswith(deep_prefix) for k in names) else "ST50"


def load_state_dict_strict(model: StarkModel, state: dict, source: str) -> None:
    """Load with one clear error listing missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    # FrozenBatchNorm keeps no counter: ordinary BatchNorm counters in the backbone are dropped.
    unexpected = sorted(k for k in state if k not in own
                        and not (k.startswith("backbone.") and k.endswith("num_batches_tracked")))
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shapes:
        def fmt(title, items):
            if not items:
                return ""
            more = f" ... (+{len(items) - 20} more)" if len(items) > 20 else ""
            return f"\n  {title} ({len(items)}): " + ", ".join(items[:20]) + more
        raise CheckpointError(f"{source} does not match the {model.config.variant} model:"
                              + fmt("missing keys", missing) + fmt("unexpected keys", unexpected)
                              + fmt("mis-shaped keys", shapes))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def load_checkpoint(path, variant: str | None = None, config: ModelConfig | None = None):
    """Load any supported checkpoint -> ``(model in eval mode, ModelConfig)``.

    ``variant`` (preset name) or ``config`` choose the architecture for official and mmtracking
    files; without them it is inferred from the weights (score head present? ResNet-101 depth?).
    Our own checkpoints carry their config; a ``variant`` given with them must agree.
    """
    path = Path(path)
    ckpt = _read(path)
    layout = detect_layout(ckpt)
    if layout == "stark_ros":
        stored = ModelConfig.from_dict(ckpt["config"])
        if variant is not None and variant.upper() != stored.variant.upper():
            raise CheckpointError(f"{path}: holds a {stored.variant} model, not {variant}")
        cfg = config or stored
        state = ckpt["model"]
    else:
        raw = ckpt["net"] if layout == "official" else ckpt["state_dict"]
        cfg = config or get_preset(variant or _guess_variant(raw, layout, ckpt))
    model = build_model(cfg)
    if layout == "official":
        state = {_official_to_ours(k): v for k, v in raw.items()}
    elif layout == "mmtracking":
        state = mmtracking_to_ours(raw, model.state_dict().keys())
    load_state_dict_strict(model, state, f"{path} ({layout} layout)")
    return model.eval(), cfg


def save_checkpoint(path, model: StarkModel, config: ModelConfig | None = None, **extra) -> Path:
    """Write our self-describing layout. ``extra`` (epoch, optimiser state, ...) must be plain
    tensors / numbers / strings / containers so the file loads with ``weights_only=True``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = config or model.config
    payload = {"format": OUR_FORMAT, "version": stark_ros.__version__, "config": cfg.to_dict(),
               "model": model.state_dict(), **extra}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind
    return path
