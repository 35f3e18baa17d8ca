"""Typed run configuration: YAML presets in `configs/` plus dotted `key=value` command-line overrides.

One `RunConfig` describes a whole run (model, LoRA, data, training, decoding). `load_config(path, overrides)`
reads a preset, applies overrides such as `train.lr=1e-3 lora.r=8` and builds the config; unknown keys, duplicated
keys and bad values raise `ConfigError` with a message that names the key (and lists the valid keys).

Every section is the runtime object itself, which declares its settings' defaults and types and checks their
values when it is built (`SettingError`): `lora` is the model's `LoRAConfig`, `decode` extends the search's
`BeamSettings`; model presets come from `model.architecture`. A setting is therefore declared in one place.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lora_nlg.atomic import atomic_file
from lora_nlg.decode.beam_settings import BATCH_SIZE, BeamSettings
from lora_nlg.model.architecture import PRESETS
from lora_nlg.model.lora_config import LoRAConfig
from lora_nlg.setting_checks import SettingError, require
from lora_nlg.tokenizer import VOCAB_SIZE


class ConfigError(ValueError):
    """A config file or override is invalid; the message says which key and why."""


@dataclass
class ModelConfig:
    name: str = "gpt2-medium"   # a preset of lora_nlg.model.architecture.PRESETS (gpt2, gpt2-medium, ..., small, tiny)
    pretrained: str = ""        # HF checkpoint dir or weights file; "" -> checkpoints/pretrained/<name>/
    random_init: bool = False   # random weights from the preset (tests and benchmarks only; scores are meaningless)

    def __post_init__(self) -> None:
        require(self.name in PRESETS or bool(self.pretrained), "model.name", self.name,
                f"not a preset ({', '.join(PRESETS)}); pass model.pretrained=<dir> for other models")


@dataclass
class DataConfig:
    dataset: str = "e2e"        # a dataset of the data stage (lora_nlg.data.datasets.dataset_names()); the data
                                #   stage writes data/<dataset>/<split>.jsonl
    dir: str = ""               # "" -> data/<dataset>
    train_split: str = "train"  # file stem of the training split
    valid_split: str = "valid"  # validation split; "" disables validation
    max_seq_len: int = 512      # context+completion tokens kept (right truncation, as the reference)
    max_valid_examples: int = 0  # validate on the first N valid examples only (0 = all); CPU demos

    def __post_init__(self) -> None:
        require(bool(self.dataset), "data.dataset", self.dataset, "empty")
        require(bool(self.train_split), "data.train_split", self.train_split, "empty")
        require(2 <= self.max_seq_len <= 1024, "data.max_seq_len", self.max_seq_len, "not in [2, 1024]")
        require(self.max_valid_examples >= 0, "data.max_valid_examples", self.max_valid_examples, "must be >= 0")

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

    def __post_init__(self) -> None:
        for key in ("batch_size", "grad_acc", "valid_batch_size", "bucket_window"):
            require(getattr(self, key) >= 1, f"train.{key}", getattr(self, key), "must be >= 1")
        for key in ("max_tokens", "max_steps", "stop_after_steps", "epochs", "warmup_steps", "log_interval",
                    "eval_interval", "save_interval", "keep_last", "seed"):
            require(getattr(self, key) >= 0, f"train.{key}", getattr(self, key), "must be >= 0")
        require(self.max_steps > 0 or self.epochs > 0, "train.epochs", self.epochs, "need epochs > 0 or max_steps > 0")
        require(self.keep_last >= 1, "train.keep_last", self.keep_last,
                "must be >= 1: resume needs the newest step checkpoint")
        require(self.optimizer in ("adamw_reference", "adamw_torch"), "train.optimizer", self.optimizer,
                "not adamw_reference|adamw_torch")
        require(self.lr > 0, "train.lr", self.lr, "must be > 0")
        require(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "must be >= 0")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "train.betas", self.betas,
                "not two values in [0, 1)")
        require(self.eps > 0, "train.eps", self.eps, "must be > 0")
        require(self.clip >= 0, "train.clip", self.clip, "must be >= 0")
        require(0 <= self.label_smoothing < 1, "train.label_smoothing", self.label_smoothing, "not in [0, 1)")
        require(self.schedule in ("linear", "cosine", "constant"), "train.schedule", self.schedule,
                "not linear|cosine|constant")
        require(self.precision in ("fp32", "bf16", "fp16", "auto"), "train.precision", self.precision,
                "not fp32|bf16|fp16|auto")
        require(self.device in ("auto", "cpu", "cuda"), "train.device", self.device, "not auto|cpu|cuda")


@dataclass(frozen=True)
class DecodeConfig(BeamSettings):
    """The search's `BeamSettings` (decode.beam, decode.length_penalty, ...) plus how the decode stage runs it."""
    batch_size: int = BATCH_SIZE    # unique inputs per beam-search batch
    ref_num: int = 6                # WebNLG/DART reference files (reference0..5)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.eos_ids) >= 1 and all(0 <= i < VOCAB_SIZE for i in self.eos_ids), "decode.eos_ids",
                list(self.eos_ids), f"must be GPT-2 token ids in [0, {VOCAB_SIZE})")
        require(self.batch_size >= 1, "decode.batch_size", self.batch_size, "must be >= 1")
        require(self.ref_num >= 1, "decode.ref_num", self.ref_num, "must be >= 1")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
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


SECTIONS: dict[str, type] = typing.get_type_hints(RunConfig)


def valid_keys() -> list[str]:
    """Every dotted key, e.g. `train.lr`."""
    return [f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def _field_types(section: str) -> dict[str, Any]:
    return {name: typ for name, typ in typing.get_type_hints(SECTIONS[section]).items()
            if name in {f.name for f in dataclasses.fields(SECTIONS[section])}}


def _unknown_key(key: str, where: str) -> ConfigError:
    keys = "\n  ".join(valid_keys())
    return ConfigError(f"{where}unknown config key '{key}'. Valid keys:\n  {keys}")


def _coerce(key: str, value: Any, typ: Any, where: str = "") -> Any:
    """`value` (parsed YAML) converted to `typ`, or ConfigError naming the key."""
    given = value

    def bad(why: str = "") -> ConfigError:
        name = getattr(typ, "__name__", str(typ))
        return ConfigError(f"{where}bad value for {key}: {given!r} (expected {name}{why})")

    container = typing.get_origin(typ)
    if container in (list, tuple):
        item_type = typing.get_args(typ)[0]
        if isinstance(value, str):  # `lora.targets=q,v` on the command line
            value = [yaml.safe_load(v) if item_type is not str else v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad()
        return container(_coerce(f"{key}[{i}]", v, item_type, where) for i, v in enumerate(value))
    if typ is bool:
        if isinstance(value, bool):
            return value
        if value in (0, 1):       # RESUME=1
            return bool(value)
        raise bad(": true/false")
    if typ in (int, float):
        if isinstance(value, str):
            try:
                value = float(value)   # `1e3`; YAML 1.1 reads "1e-3" (no dot) as a string
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        # inf and nan would slip through every range check (nan compares false, inf passes `> 0`)
        if not math.isfinite(value):
            raise bad(": a finite number")
        if typ is int:
            if int(value) != value or abs(value) >= 2 ** 63:
                raise bad(": a 64-bit integer")
            return int(value)
        try:
            return float(value)
        except OverflowError:   # an integer beyond the float range
            raise bad(": a finite number") from None
    if typ is str:
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            raise bad()
        return str(value)
    raise TypeError(f"unsupported config type {typ} for {key}")


class _Values:
    """Coerced values per section, and where each came from (a file or an override), before the sections are built."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
        self.origin: dict[str, str] = {}

    def set(self, key: str, value: Any, where: str = "") -> None:
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name or name not in _field_types(section):
            raise _unknown_key(key, where)
        self.values[section][name] = _coerce(key, value, _field_types(section)[name], where)
        self.origin[key] = where

    def set_sections(self, data: Any, where: str = "") -> None:
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
                self.set(f"{section}.{name}", value, where)

    def build(self) -> RunConfig:
        """The sections, each built (and so checked) from its values; an error names the key and its origin."""
        sections = {}
        for section, cls in SECTIONS.items():
            try:
                sections[section] = cls(**self.values[section])
            except SettingError as e:
                raise ConfigError(f"{self.origin.get(e.key, '')}{e}") from None
        return RunConfig(**sections)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a mapping with the same key twice is an error: PyYAML keeps the last one
    silently, so a config file with a section twice would lose the first one's settings."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, typing.Hashable):
                    continue  # the base class names an unhashable key
                if key in first_line:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice (first on line {first_line[key]})", key_node.start_mark)
                first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _read_yaml(path: Path) -> Any:
    try:
        return parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).replace("\n", " ")
        raise ConfigError(f"{path}: {line}invalid YAML ({problem})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config ({e})") from None


def parse_override(text: str) -> tuple[str, Any]:
    """`"train.lr=1e-3"` -> `("train.lr", 0.001)`; the value is read as YAML (`true`, `[q, v]`, `1e-3`)."""
    key, eq, raw = text.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"override {text!r} is not key=value (e.g. train.lr=1e-3)")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def from_dict(data: dict, where: str = "") -> RunConfig:
    """The config of parsed YAML sections (`{"train": {"lr": 1e-3}}`), every other key at its default."""
    values = _Values()
    values.set_sections(data, where)
    return values.build()


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Preset `path` (None = defaults) with dotted `key=value` overrides applied in order, checked."""
    values = _Values()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        values.set_sections(_read_yaml(path) or {}, where=f"{path}: ")
    for text in overrides:
        key, value = parse_override(text)
        values.set(key, value, where="override: ")
    return values.build()


def to_dict(cfg: RunConfig) -> dict:
    """{section: {name: value}} with plain YAML/JSON values (lists, not tuples)."""
    return {section: {f.name: _plain(getattr(getattr(cfg, section), f.name))
                      for f in dataclasses.fields(getattr(cfg, section))} for section in SECTIONS}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


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
