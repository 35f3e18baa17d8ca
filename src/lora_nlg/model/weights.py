"""Reading and writing GPT-2 weights and LoRA adapters: Hugging Face checkpoints, our LoRA files, PEFT adapters.

Loading is strict: every expected tensor present, nothing unexpected, every shape checked. `.bin` files are
read with `torch.load(weights_only=True)`, so a pickle that would run code is refused. These are functions of a
`model.GPT2Network`; the public `gpt2.GPT2` offers them as its methods.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pickle
import re
import warnings
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes

from lora_nlg.atomic import atomic_file, writing
from lora_nlg.model.lora import LoRAConfig, LoRAConv1D, make_lora_conv
from lora_nlg.model.network import (
    IGNORABLE_SUFFIXES,
    TIED_HEAD_KEY,
    CheckpointError,
    GPT2Config,
    GPT2Network,
    _check_keys_and_shapes,
)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PEFT_PREFIX = "base_model.model."
HEAD_DIM = 64  # every GPT-2 size; used when a legacy checkpoint comes without config.json
N = TypeVar("N", bound=GPT2Network)  # loaders build the class they are given (the public GPT2 or the network)


# ------------------------------------------------------------------------------------------ raw files

def load_weights_only(path: Path):
    """`torch.load(weights_only=True)` on the CPU: a pickle that would run code is refused. torch's warning about
    a foreign file's pickle protocol is dropped: such a file is refused with one error line, or loads fine."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(path, map_location="cpu", weights_only=True)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a .safetensors file or a torch .bin/.pt file (weights only)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        try:
            return st_load_bytes(path.read_bytes())
        except SafetensorError as e:
            raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
    try:
        obj = load_weights_only(path)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused: the file holds pickled Python objects that would run code when loaded "
            f"(torch.load weights_only=True rejected it: {str(e).splitlines()[0]}). Load only files you trust "
            f"as plain tensors, e.g. convert it to safetensors.") from None
    except Exception as e:  # zip/format errors from torch
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    for wrapper in ("model_state_dict", "state_dict"):  # the reference's {'model_state_dict': ...} files
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    return obj


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    data = st_save_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                         metadata={"format": "pt", **(metadata or {})})
    with atomic_file(path, "wb") as f:
        f.write(canonical_safetensors(data))


def canonical_safetensors(data: bytes) -> bytes:
    """The same file with its header's keys sorted: safetensors writes the metadata from a Rust HashMap, whose
    order changes from call to call, so identical adapters would get different bytes (and checksums)."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # keep the tensor data 8-byte aligned, as safetensors does
    return len(header).to_bytes(8, "little") + header + data[8 + n:]


def parse_json(text: str | bytes, source: str | Path) -> object:
    """JSON of a checkpoint file; anything unreadable (bad syntax or encoding, absurd nesting) is a
    `CheckpointError` naming `source` instead of a traceback."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{source}: not valid JSON ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{source}: not usable JSON (nested too deeply)") from None


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object (config.json, adapter_config.json)."""
    try:
        text = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None
    obj = parse_json(text, path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def check_finite(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights holding NaN/inf (a diverged or damaged adapter would decode every input to garbage)."""
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} tensor(s) hold NaN or inf values (e.g. {bad[0]}); the weights "
                              f"are damaged or training diverged; use another checkpoint")


def read_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file (strings by the format's rules)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            header_len = int.from_bytes(head, "little")
            if len(head) < 8 or header_len > path.stat().st_size - 8:
                raise CheckpointError(f"{path}: not a valid safetensors file (empty, truncated or not safetensors)")
            header = parse_json(f.read(header_len), path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(header, dict) or not isinstance(meta or {}, dict):
        raise CheckpointError(f"{path}: not a valid safetensors file (its header is not a JSON object)")
    try:
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise CheckpointError(f"{path}: not a valid safetensors file (a tensor entry lacks data_offsets)") from None
    size = path.stat().st_size
    if 8 + header_len + end != size:
        raise CheckpointError(f"{path}: truncated or damaged safetensors file (its header describes "
                              f"{8 + header_len + end} bytes, the file has {size})")
    return meta or {}


def lora_config_from_metadata(meta: dict[str, str], path: Path) -> LoRAConfig | None:
    """The LoRAConfig recorded in an adapter file's metadata (None without one); damage names the file."""
    if "lora_config" not in meta:
        return None
    saved = parse_json(meta["lora_config"], f"{path}: metadata lora_config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: metadata lora_config is not a JSON object")
    known = {f.name for f in dataclasses.fields(LoRAConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise CheckpointError(f"{path}: metadata lora_config has unknown field(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(known))})")
    try:
        return LoRAConfig(**saved)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata lora_config: {e}") from None


# ------------------------------------------------------------------------------------------ base model
def locate_weights(path: Path) -> tuple[Path, Path | None]:
    """(weights file, config.json or None) for a checkpoint directory or a single weights file."""
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                cfg = path / "config.json"
                return path / name, cfg if cfg.is_file() else None
        raise CheckpointError(f"{path}: no {' or '.join(WEIGHT_FILES)} in this directory")
    if path.is_file():
        return path, None
    raise CheckpointError(f"{path}: no such checkpoint file or directory")


def normalise_keys(state: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """Map both layouts (GPT2LMHeadModel `transformer.h.0…` and bare legacy `h.0…`) onto our names."""
    out: dict[str, torch.Tensor] = {}
    head = None
    for key, tensor in state.items():
        name = key.removeprefix("module.")
        if name.endswith(IGNORABLE_SUFFIXES):
            continue
        if name == TIED_HEAD_KEY:
            head = tensor
            continue
        if not name.startswith("transformer."):
            name = "transformer." + name
        if name in out:
            raise CheckpointError(f"{source}: tensor {key} appears twice (with and without the transformer. prefix)")
        out[name] = tensor
    wte = out.get("transformer.wte.weight")
    if head is not None and wte is not None and (head.shape != wte.shape or not torch.equal(head, wte)):
        raise CheckpointError(f"{source}: lm_head.weight differs from transformer.wte.weight; GPT-2's head is tied "
                              f"to the token embedding and an untied head is not supported")
    return out


def infer_config(state: dict[str, torch.Tensor], source: Path) -> GPT2Config:
    try:
        vocab, d = state["transformer.wte.weight"].shape
        n_pos = state["transformer.wpe.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"{source}: missing tensor {e.args[0]} (needed to infer the model size)") from None
    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    if d % HEAD_DIM:
        raise CheckpointError(f"{source}: n_embd={d} is not a multiple of the head size {HEAD_DIM}; add a config.json")
    return GPT2Config(vocab_size=vocab, n_positions=n_pos, n_embd=d, n_layer=max(layers, default=-1) + 1,
                      n_head=d // HEAD_DIM)


def load_pretrained(cls: type[N], path: str | Path, lora: LoRAConfig | None) -> N:
    path = Path(path)
    weights, cfg_file = locate_weights(path)
    state = normalise_keys(read_tensors(weights), weights)
    if cfg_file is not None:
        hf = read_json_object(cfg_file)
        try:
            config = GPT2Config.from_hf_dict(hf, str(cfg_file))
        except (TypeError, ValueError) as e:
            raise CheckpointError(str(e) if str(e).startswith(str(cfg_file)) else f"{cfg_file}: {e}") from None
    else:
        config = infer_config(state, weights)
    with torch.device("meta"):
        model = cls(config)
    expected = {k: v for k, v in model.state_dict().items()}
    _check_keys_and_shapes(expected, state, str(weights))
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True, assign=True)
    if lora is not None:
        model.add_lora(lora)
    return model


def merged_base_state(model: GPT2Network) -> dict[str, torch.Tensor]:
    """Base weights with every unmerged adapter folded in (fp32 arithmetic); the model is left untouched."""
    state = {k: v.clone() for k, v in model.base_state_dict().items()}
    for name, module in model.lora_modules():
        if module.merged:
            continue
        weight = state[f"{name}.weight"]
        for slice_name, (start, end) in module.slices.items():
            block = weight[:, start:end]
            block.copy_((block.float() + module.delta_weight(slice_name, torch.float32)).to(weight.dtype))
    return state


def save_pretrained(model: GPT2Network, out_dir: str | Path, merge_lora: bool) -> None:
    out_dir = Path(out_dir)
    if merge_lora:
        state = merged_base_state(model)
    else:
        if model.lora_merged:
            raise CheckpointError("LoRA is merged into the weights: call unmerge_lora() first, or save_merged()")
        state = model.base_state_dict()
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    write_tensors(out_dir / "model.safetensors", state)
    with atomic_file(out_dir / "config.json") as f:
        f.write(json.dumps(model.config.to_hf_dict(), indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------------------ LoRA files
def save_lora(model: GPT2Network, path: str | Path) -> None:
    if model.lora_config is None:
        raise CheckpointError("the model has no LoRA adapters to save")
    write_tensors(Path(path), model.lora_state_dict(),
                  {"lora_config": json.dumps(model.lora_config.to_dict()),
                   "model_config": json.dumps(model.config.to_hf_dict())})


def load_lora(model: GPT2Network, path: str | Path) -> None:
    path = Path(path)
    if model.lora_config is None:
        raise CheckpointError(f"{path}: the model has no LoRA adapters to load into")
    saved = lora_config_from_metadata(read_metadata(path), path) if path.is_file() else None
    if saved is not None:
        mine, theirs = model.lora_config.to_dict(), saved.to_dict()
        differ = [f"{k}: file {theirs[k]!r} vs model {mine[k]!r}" for k in ("r", "alpha", "targets", "use_rslora")
                  if theirs[k] != mine[k]]
        if differ:
            raise CheckpointError(f"{path}: LoRA settings differ from the model's: " + "; ".join(differ))
    tensors = read_tensors(path)
    check_finite(tensors, path)
    model.load_lora_state_dict(tensors, str(path))


def read_lora_config(path: str | Path) -> LoRAConfig | None:
    """The LoRAConfig stored in a LoRA file's metadata (None for files without it)."""
    path = Path(path)
    return lora_config_from_metadata(read_metadata(path), path)


# ------------------------------------------------------------------------------------------ PEFT
def _peft_scale_alpha(scale: float, rank: int, rslora: bool) -> float:
    """PEFT's lora_alpha giving the same scale at rank `rank` (alpha'/r' = alpha/r)."""
    return scale * (math.sqrt(rank) if rslora else rank)


def fused_adapter(module: LoRAConv1D) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice adapters as one adapter on the whole output: stacked A's, block-placed B's (rest zero)."""
    names = list(module.slices)
    a = torch.cat([module.lora_A[n].detach() for n in names], dim=0)
    b = a.new_zeros(module.weight.shape[1], module.r * len(names))
    for i, n in enumerate(names):
        start, end = module.slices[n]
        b[start:end, i * module.r:(i + 1) * module.r] = module.lora_B[n].detach()
    return a, b


def save_peft_adapter(model: GPT2Network, out_dir: str | Path, base_model_name_or_path: str | None) -> None:
    cfg = model.lora_config
    if cfg is None:
        raise CheckpointError("the model has no LoRA adapters to export")
    tensors, ranks, alphas, targets = {}, {}, {}, []
    for name, module in model.lora_modules():
        a, b = fused_adapter(module)
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = a
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = b
        suffix = ".".join(name.split(".")[-2:])  # e.g. attn.c_attn
        ranks[suffix] = a.shape[0]
        alphas[suffix] = _peft_scale_alpha(module.scale, a.shape[0], cfg.use_rslora)
        if suffix not in targets:
            targets.append(suffix)
    default = targets[0]
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model_name_or_path,
        "r": ranks[default], "lora_alpha": alphas[default], "lora_dropout": cfg.dropout,
        "target_modules": targets, "fan_in_fan_out": True, "bias": "none", "use_rslora": cfg.use_rslora,
        "modules_to_save": None, "init_lora_weights": True, "inference_mode": True,
        "rank_pattern": {k: v for k, v in ranks.items() if v != ranks[default]},
        "alpha_pattern": {k: v for k, v in alphas.items() if v != alphas[default]},
        "layers_to_transform": None, "layers_pattern": None, "use_dora": False,
    }
    out_dir = Path(out_dir)
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    write_tensors(out_dir / "adapter_model.safetensors", tensors)
    with atomic_file(out_dir / "adapter_config.json") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _pattern_value(patterns: dict, module_name: str, default):
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module_name):
            return value
    return default


def read_peft_settings(acfg: dict, cfg_file: Path) -> tuple[bool, float, int, float]:
    """(use_rslora, lora_dropout, r, lora_alpha) of a PEFT adapter_config.json; a missing or bad one names the key."""
    for key in ("r", "lora_alpha"):
        if key not in acfg:
            raise CheckpointError(f"{cfg_file}: missing key {key!r} (a PEFT LoRA adapter_config.json has it)")
    r, alpha, dropout = acfg["r"], acfg["lora_alpha"], acfg.get("lora_dropout", 0.0)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise CheckpointError(f"{cfg_file}: key 'r' must be a positive integer, got {r!r}")
    for key, value in (("lora_alpha", alpha), ("lora_dropout", dropout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CheckpointError(f"{cfg_file}: key {key!r} must be a finite number, got {value!r}")
    return bool(acfg.get("use_rslora", False)), float(dropout), r, float(alpha)


def load_peft_adapter(cls: type[N], base_path: str | Path, adapter_dir: str | Path) -> N:
    """A base checkpoint plus a PEFT LoRA adapter; each adapted module gets one adapter over its whole output."""
    adapter_dir = Path(adapter_dir)
    cfg_file = adapter_dir / "adapter_config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{adapter_dir}: no adapter_config.json (not a PEFT adapter directory)")
    acfg = read_json_object(cfg_file)
    if acfg.get("peft_type") != "LORA" or acfg.get("use_dora") or acfg.get("bias", "none") != "none":
        raise CheckpointError(f"{cfg_file}: only plain LoRA adapters (peft_type LORA, no DoRA, bias none) are supported")
    weights = next((adapter_dir / n for n in ("adapter_model.safetensors", "adapter_model.bin")
                    if (adapter_dir / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{adapter_dir}: no adapter_model.safetensors or adapter_model.bin")
    tensors = read_tensors(weights)
    check_finite(tensors, weights)
    model = load_pretrained(cls, base_path, lora=None)
    modules = dict(model.named_modules())
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        m = re.fullmatch(rf"{re.escape(PEFT_PREFIX)}(.+)\.lora_([AB])(?:\.default)?\.weight", key)
        if m is None or m.group(1) not in modules:
            raise CheckpointError(f"{weights}: unexpected tensor {key} (not a LoRA A/B weight of a GPT-2 module)")
        pairs.setdefault(m.group(1), {})[m.group(2)] = t
    rslora, dropout, r0, alpha0 = read_peft_settings(acfg, cfg_file)
    targets = set()
    for name, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise CheckpointError(f"{weights}: module {name} lacks lora_{'B' if 'A' in ab else 'A'}.weight")
        parent_name, attr = name.rsplit(".", 1)
        base = getattr(modules[parent_name], attr)
        n_in, n_out = base.weight.shape
        r = int(_pattern_value(acfg.get("rank_pattern") or {}, name, r0))
        alpha = float(_pattern_value(acfg.get("alpha_pattern") or {}, name, alpha0))
        if tuple(ab["A"].shape) != (r, n_in) or tuple(ab["B"].shape) != (n_out, r):
            raise CheckpointError(f"{weights}: {name} adapter shapes A{tuple(ab['A'].shape)} B{tuple(ab['B'].shape)} "
                                  f"do not fit r={r}, in={n_in}, out={n_out}")
        scale = alpha / (math.sqrt(r) if rslora else r)
        conv = make_lora_conv(base, {"all": (0, n_out)}, r, scale, dropout, "kaiming")
        with torch.no_grad():
            conv.lora_A["all"].copy_(ab["A"])
            conv.lora_B["all"].copy_(ab["B"])
        setattr(modules[parent_name], attr, conv)
        targets.add(".".join(name.split(".")[-2:]).replace("attn.c_attn", "c_attn"))
    model.lora_config = LoRAConfig(r=r0, alpha=alpha0, dropout=dropout, targets=tuple(sorted(targets)), use_rslora=rslora)
    for n, p in model.named_parameters():
        p.requires_grad_(".lora_" in n)
    return model
