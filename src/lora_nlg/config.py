"""Typed run configuration: YAML presets in `configs/` plus dotted `key=value` command-line overrides.

One `RunConfig` describes a whole run (model, LoRA, data, training, decoding). `load_config(path, overrides)`
reads a preset, applies overrides such as `train.lr=1e-3 lora.r=8`, checks every value and returns the config;
unknown keys and bad values raise `ConfigError` with a message that names the key (and lists the valid keys).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lora_nlg.atomic import atomic_file

MODEL_PRESETS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "tiny", "small")
LORA_TARGETS = ("q", "k", "v", "c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
DATASETS = ("e2e", "webnlg", "dart")


class ConfigError(ValueError):
    """A config file or override is invalid; the message says which key and why."""


@dataclass
class ModelConfig:
    name: str = "gpt2-medium"   # preset: gpt2 | gpt2-medium | gpt2-large | gpt2-xl | small | tiny
    pretrained: str = ""        # HF checkpoint dir or weights file; "" -> checkpoints/pretrained/<name>/
    random_init: bool = False   # random weights from the preset (tests and benchmarks only; scores are meaningless)


@dataclass
class LoRASection:
    r: int = 4                  # rank (paper: r_q = r_v = 4)
    alpha: float = 128.0        # scaling alpha/r; the product default (= reference lora_attn_alpha). Paper recipes: 32
    dropout: float = 0.0        # dropout on the LoRA input only (paper recipes: 0.1 E2E/WebNLG, 0.0 DART)
    targets: list[str] = field(default_factory=lambda: ["q", "v"])  # also k, c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj
    use_rslora: bool = False    # rank-stabilised scaling alpha/sqrt(r) instead of alpha/r
    init: str = "kaiming"       # kaiming: A ~ U(+-1/sqrt(d)), B = 0 (reference HEAD) | gaussian: paper-era N(0, .02)

    def to_lora_config(self):
        """The model's `lora_nlg.LoRAConfig` for these settings."""
        from lora_nlg.model.lora import LoRAConfig

        return LoRAConfig(r=self.r, alpha=self.alpha, dropout=self.dropout, targets=tuple(self.targets),
                          use_rslora=self.use_rslora, init=self.init)


@dataclass
class DataConfig:
    dataset: str = "e2e"        # e2e | webnlg | dart (the data stage writes data/<dataset>/<split>.jsonl)
    dir: str = ""               # "" -> data/<dataset>
    train_split: str = "train"  # file stem of the training split
    valid_split: str = "valid"  # validation split; "" disables validation
    max_seq_len: int = 512      # context+completion tokens kept (right truncation, as the reference)
    max_valid_examples: int = 0  # validate on the first N valid examples only (0 = all); CPU demos

    def split_path(self, split: str) -> Path:
        return Path(self.dir or f"data/{self.dataset}") / f"{split}.jsonl"


@dataclass
class TrainConfig:
    # Run directory: <out_dir>/<run>/ ("" -> the dataset name, as `make train RUN=` defaults).
    run: str = ""
    out_dir: str = "checkpoints"
    resume: bool = False        # continue from the newest complete step-<N>/ (else an existing run dir is an error)
    seed: int = 110             # LoRA init, data order (seed + epoch) and dropout (seed + rank)
    # Batch: global batch = batch_size x grad_acc x world_size examples; loss = token mean over that global batch.
    batch_size: int = 8         # examples per rank per micro-batch
    grad_acc: int = 1           # micro-batches per optimizer update
    max_tokens: int = 0         # >0: split a micro-batch into chunks of <= max_tokens padded tokens (same loss,
                                #     bounded activation memory); 0 = never split
    bucket_window: int = 50     # global batches per length-sorting window (1 = plain shuffle, no bucketing)
    valid_batch_size: int = 16  # examples per validation batch (validation is length-sorted)
    # Length of training, in optimizer updates.
    epochs: int = 5
    max_steps: int = 0          # 0 -> epochs x ceil(ceil(N / (batch_size x world)) / grad_acc)
    stop_after_steps: int = 0   # end this invocation after N updates with a checkpoint (time-limited jobs; the
                                #     schedule is unchanged, RESUME=1 continues); 0 = run to max_steps
    # Optimiser (paper Table 11 + reference README flags).
    optimizer: str = "adamw_reference"  # adamw_reference: eps added to the un-corrected sqrt(v) and weight decay
                                        #   after the update (reference optimizer.py) | adamw_torch: torch.optim.AdamW
    lr: float = 2e-4
    weight_decay: float = 0.01  # decoupled, on every LoRA parameter (reference: no_decay_bias False)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-6
    clip: float = 0.0           # max grad norm; 0 = no clipping (reference README)
    label_smoothing: float = 0.1  # (1-eps) nll + eps mean_v(-log p) over the full vocabulary
    # Schedule: update k (1-based) uses lr x lambda(k-1), as the reference's LambdaLR; the first update has lr 0
    # when warmup_steps > 0.
    schedule: str = "linear"    # linear (warmup, then linear decay to 0) | cosine (warmup, cosine to 0) | constant
    warmup_steps: int = 500
    # Numerics and speed.
    precision: str = "fp32"     # fp32 | bf16 (autocast, CPU and CUDA) | fp16 (autocast + grad scaler, CUDA only) |
                                #   auto (bf16 where the hardware computes it natively, else fp32; config.yaml
                                #   records the resolved value, lora_nlg/precision.py decides)
    compile: bool = False       # torch.compile the model
    device: str = "auto"        # auto (cuda:LOCAL_RANK if available, else cpu) | cpu | cuda
    # Logging, validation and checkpoints (intervals in optimizer updates; 0 disables).
    log_interval: int = 100     # metrics.jsonl line + progress bar every N updates
    eval_interval: int = 2000   # validation every N updates (also at the end of every epoch and of the run)
    eval_at_start: bool = True  # validate the starting point (step 0) too
    save_interval: int = 1000   # step-<N>/ checkpoint (adapter + training state) every N updates
    keep_last: int = 3          # step-<N>/ checkpoints kept (older ones are deleted); best/ and final/ always kept


@dataclass
class DecodeConfig:
    beam: int = 10                  # beam width
    length_penalty: float = 0.8     # score / generated_len ** lp (paper: E2E 0.9, WebNLG/DART 0.8; README E2E 0.8)
    no_repeat_ngram_size: int = 4   # over generated tokens only (as the reference)
    repetition_penalty: float = 1.0  # 1.0 = off
    min_length: int = 0             # end tokens banned before this many generated tokens
    max_new_tokens: int = 64        # reference eval_len
    eos_ids: list[int] = field(default_factory=lambda: [50256, 628])  # <|endoftext|> and "\n\n"
    batch_size: int = 16            # unique inputs per beam-search batch
    ref_num: int = 6                # WebNLG/DART reference files (reference0..5)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoRASection = field(default_factory=LoRASection)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def run_dir(self) -> Path:
        return Path(self.train.out_dir) / (self.train.run or self.data.dataset)

    def pretrained_path(self) -> Path:
        """Where the base weights come from; a clear error when they are missing."""
        path = Path(self.model.pretrained or f"checkpoints/pretrained/{self.model.name}")
        if not path.exists():
            how = (f"`make pretrained MODEL={self.model.name}`" if not self.model.pretrained
                   else "check the path")
            raise ConfigError(f"pretrained weights not found at {path}/: run {how}, or pass PRETRAINED=<dir> "
                              f"(model.pretrained=<dir or file>); model.random_init=true uses random weights "
                              f"(tests only)")
        return path


SECTIONS = {f.name: f.type for f in dataclasses.fields(RunConfig)}


def valid_keys() -> list[str]:
    """Every dotted key, e.g. `train.lr`."""
    return [f"{s.name}.{f.name}" for s in dataclasses.fields(RunConfig)
            for f in dataclasses.fields(_section_class(s.name))]


def _section_class(section: str) -> type:
    return typing.get_type_hints(RunConfig)[section]


def _field_types(section: str) -> dict[str, Any]:
    return typing.get_type_hints(_section_class(section))


def _unknown_key(key: str, where: str) -> ConfigError:
    keys = "\n  ".join(valid_keys())
    return ConfigError(f"{where}unknown config key '{key}'. Valid keys:\n  {keys}")


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """`value` (parsed YAML) converted to `typ`, or ConfigError naming the key."""
    def bad(why: str = "") -> ConfigError:
        name = getattr(typ, "__name__", str(typ))
        return ConfigError(f"bad value for {key}: {value!r} (expected {name}{why})")

    if typing.get_origin(typ) is list:
        (item_type,) = typing.get_args(typ)
        if isinstance(value, str):  # `lora.targets=q,v` on the command line
            value = [yaml.safe_load(v) if item_type is not str else v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad()
        return [_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if value in (0, 1):       # RESUME=1
            return bool(value)
        raise bad(": true/false")
    if typ is int:
        if isinstance(value, str):
            try:
                value = float(value)   # `1e3`
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise bad()
        return int(value)
    if typ is float:
        if isinstance(value, str):
            try:
                value = float(value)   # YAML 1.1 reads "1e-3" (no dot) as a string
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if typ is str:
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            raise bad()
        return str(value)
    raise TypeError(f"unsupported config type {typ} for {key}")


def _check(cfg: RunConfig) -> None:
    """Range and choice checks that types alone cannot express."""
    def require(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"bad value for {key}: {why}")

    m, lo, d, t, dc = cfg.model, cfg.lora, cfg.data, cfg.train, cfg.decode
    require(m.name in MODEL_PRESETS or bool(m.pretrained), "model.name",
            f"{m.name!r} is not a preset ({', '.join(MODEL_PRESETS)}); pass model.pretrained=<dir> for other models")
    require(lo.r >= 1, "lora.r", f"{lo.r} < 1 (training updates the LoRA parameters only)")
    require(lo.alpha > 0, "lora.alpha", f"{lo.alpha} must be > 0")
    require(0 <= lo.dropout < 1, "lora.dropout", f"{lo.dropout} not in [0, 1)")
    require(len(lo.targets) > 0, "lora.targets", "empty")
    for tgt in lo.targets:
        require(tgt in LORA_TARGETS, "lora.targets", f"{tgt!r} not one of {', '.join(LORA_TARGETS)}")
    require(lo.init in ("kaiming", "gaussian"), "lora.init", f"{lo.init!r} not kaiming|gaussian")
    require(not ("c_attn" in lo.targets and {"q", "k", "v"} & set(lo.targets)), "lora.targets",
            "'c_attn' (the whole fused projection) excludes the q/k/v slices")
    require(bool(d.dataset), "data.dataset", "empty")
    require(bool(d.train_split), "data.train_split", "empty")
    require(2 <= d.max_seq_len <= 1024, "data.max_seq_len", f"{d.max_seq_len} not in [2, 1024]")
    require(d.max_valid_examples >= 0, "data.max_valid_examples", "must be >= 0")
    for key in ("batch_size", "grad_acc", "valid_batch_size", "bucket_window"):
        require(getattr(t, key) >= 1, f"train.{key}", f"{getattr(t, key)} must be >= 1")
    for key in ("max_tokens", "max_steps", "stop_after_steps", "epochs", "warmup_steps", "log_interval", "eval_interval",
                "save_interval", "keep_last", "seed"):
        require(getattr(t, key) >= 0, f"train.{key}", f"{getattr(t, key)} must be >= 0")
    require(t.max_steps > 0 or t.epochs > 0, "train.epochs", "need epochs > 0 or max_steps > 0")
    require(t.keep_last >= 1, "train.keep_last", "must be >= 1 (resume needs the newest step checkpoint)")
    require(t.optimizer in ("adamw_reference", "adamw_torch"), "train.optimizer",
            f"{t.optimizer!r} not adamw_reference|adamw_torch")
    require(t.lr > 0, "train.lr", f"{t.lr} must be > 0")
    require(t.weight_decay >= 0, "train.weight_decay", "must be >= 0")
    require(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), "train.betas", f"{t.betas} not two values in [0,1)")
    require(t.eps > 0, "train.eps", "must be > 0")
    require(t.clip >= 0, "train.clip", "must be >= 0")
    require(0 <= t.label_smoothing < 1, "train.label_smoothing", f"{t.label_smoothing} not in [0, 1)")
    require(t.schedule in ("linear", "cosine", "constant"), "train.schedule", f"{t.schedule!r} not linear|cosine|constant")
    require(t.precision in ("fp32", "bf16", "fp16", "auto"), "train.precision",
            f"{t.precision!r} not fp32|bf16|fp16|auto")
    require(t.device in ("auto", "cpu", "cuda"), "train.device", f"{t.device!r} not auto|cpu|cuda")
    require(dc.beam >= 1, "decode.beam", "must be >= 1")
    require(dc.max_new_tokens >= 1, "decode.max_new_tokens", "must be >= 1")
    require(dc.min_length >= 0, "decode.min_length", "must be >= 0")
    require(dc.no_repeat_ngram_size >= 0, "decode.no_repeat_ngram_size", "must be >= 0")
    require(dc.repetition_penalty > 0, "decode.repetition_penalty", "must be > 0")
    require(dc.batch_size >= 1, "decode.batch_size", "must be >= 1")
    require(dc.ref_num >= 1, "decode.ref_num", "must be >= 1")
    require(len(dc.eos_ids) >= 1 and all(0 <= i < 50257 for i in dc.eos_ids), "decode.eos_ids",
            f"{dc.eos_ids} must be token ids in [0, 50257)")


def set_value(cfg: RunConfig, key: str, value: Any, where: str = "") -> None:
    """Set dotted `key` (e.g. `train.lr`) to `value` (a parsed YAML value), converting and checking its type."""
    section, _, name = key.partition(".")
    if section not in SECTIONS or not name or name not in _field_types(section):
        raise _unknown_key(key, where)
    setattr(getattr(cfg, section), name, _coerce(key, value, _field_types(section)[name]))


def parse_override(text: str) -> tuple[str, Any]:
    """`"train.lr=1e-3"` -> `("train.lr", 0.001)`; the value is read as YAML (`true`, `[q, v]`, `1e-3`)."""
    key, eq, raw = text.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"override {text!r} is not key=value (e.g. train.lr=1e-3)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def from_dict(data: dict, where: str = "") -> RunConfig:
    cfg = RunConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}expected a mapping of sections ({', '.join(SECTIONS)})")
    for section, values in data.items():
        if section not in SECTIONS:
            raise _unknown_key(str(section), where)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{where}section '{section}' must be a mapping")
        for name, value in values.items():
            set_value(cfg, f"{section}.{name}", value, where)
    return cfg


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Preset `path` (None = defaults) with dotted `key=value` overrides applied in order, checked."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
    cfg = from_dict(data, where=f"{path}: " if path else "")
    for text in overrides:
        key, value = parse_override(text)
        set_value(cfg, key, value, where="override: ")
    _check(cfg)
    return cfg


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


def diff(a: RunConfig, b: RunConfig) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (a value, b value)} for every key that differs."""
    da, db = to_dict(a), to_dict(b)
    return {f"{s}.{k}": (da[s][k], db[s][k]) for s in da for k in da[s] if da[s][k] != db[s][k]}


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically (temp file in the same dir, then rename)."""
    path = Path(path)
    text = "# Resolved lora-nlg run configuration (all keys; load with lora_nlg.config.load_config).\n"
    text += yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)
