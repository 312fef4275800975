"""Typed run configuration: YAML presets + dotted ``key=value`` overrides + one validation pass.

A config is a tree of dataclasses. ``load_config("configs/layer-drop-cpu.yaml", ["train.lr=1e-4"])``
reads the preset, applies overrides (values parsed as YAML, so ``1e-4``, ``true``, ``[0, 3]`` work),
and ``validate`` reports *every* problem in one ``ConfigError`` before any compute starts.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from geodistill.errors import GeodistillError

# Choice fields: the Literal type is the one list of choices; loading checks it once (``_coerce``).
HiddenLoss = Literal["geodesic", "mse", "none"]
HiddenOn = Literal["decoder", "encoder", "both"]
EncoderAlign = Literal["pool", "interpolate"]
TaidMode = Literal["off", "seed", "adaptive"]
AmpMode = Literal["no", "fp16", "bf16"]
StudentInit = Literal["copy", "pretrained", "ctc"]
HiddenLayers = Literal["last", "all"]
AudioContext = Literal["full", "dynamic"]  # as geodistill.models.context.AUDIO_CONTEXTS
CTCVocab = Literal["chars"]  # blank, space, apostrophe, a-z (see geodistill.students.ctc.model.CHARS)


class ConfigError(GeodistillError, ValueError):
    """Raised with every problem of a config listed, one per line."""


def _choice_problem(value: Any, hint: Any, where: str) -> str | None:
    choices = typing.get_args(hint)
    return None if value in choices else f"{where}: must be one of {choices}, got {value!r}"


class _Choices:
    """Checks the ``Literal`` (choice) fields of a config section built directly in code; loading from
    YAML checks them earlier, while collecting every problem (``_coerce``)."""

    def __post_init__(self) -> None:
        section = _SECTIONS.get(type(self).__name__, "")
        for name, hint in typing.get_type_hints(type(self)).items():
            if typing.get_origin(hint) is Literal:
                problem = _choice_problem(getattr(self, name), hint, f"{section}{name}")
                if problem:
                    raise ConfigError(problem)


_SECTIONS = {
    "CTCConfig": "student.ctc.",
    "StudentConfig": "student.",
    "LossConfig": "loss.",
    "TrainConfig": "train.",
}


_DEC = r"model\.decoder\.layers\.\d+"
# The seed's ten injection choices (decoder side, where a copied student is trained), then common
# combinations. "cross" = encoder_attn (queries from text, keys/values from audio).
LORA_PRESETS: dict[str, list[str]] = {
    "decoder-cross-q": [rf"{_DEC}\.encoder_attn\.q_proj"],
    "decoder-cross-v": [rf"{_DEC}\.encoder_attn\.v_proj"],
    "decoder-self-q": [rf"{_DEC}\.self_attn\.q_proj"],
    "decoder-self-v": [rf"{_DEC}\.self_attn\.v_proj"],
    "decoder-cross-qv": [rf"{_DEC}\.encoder_attn\.(q_proj|v_proj)"],
    "decoder-self-qv": [rf"{_DEC}\.self_attn\.(q_proj|v_proj)"],
    "decoder-cross-qkv": [rf"{_DEC}\.encoder_attn\.(q_proj|k_proj|v_proj)"],
    "decoder-self-qkv": [rf"{_DEC}\.self_attn\.(q_proj|k_proj|v_proj)"],
    "decoder-fc2": [rf"{_DEC}\.fc2"],
    "decoder-cross-qkvo": [rf"{_DEC}\.encoder_attn\.(q_proj|k_proj|v_proj|out_proj)"],
    "decoder-self-qkvo": [rf"{_DEC}\.self_attn\.(q_proj|k_proj|v_proj|out_proj)"],
    "decoder-fc1-fc2": [rf"{_DEC}\.(fc1|fc2)"],
    "decoder-attn-qv": [rf"{_DEC}\.(self_attn|encoder_attn)\.(q_proj|v_proj)"],
    "decoder-self-ffn": [rf"{_DEC}\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)"],
    "decoder-all-linear": [rf"{_DEC}\.((self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)"],
    # Every decoder linear that acts on text states, i.e. all but the cross-attention k/v (which act on the
    # audio): those stay frozen, so their keys/values are constants the teacher can hand over or cache.
    "decoder-text-side": [
        rf"{_DEC}\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|encoder_attn\.(q_proj|out_proj)|fc1|fc2)"
    ],
}


def lora_patterns(targets: str | list[str]) -> list[str]:
    """Resolve a preset name or raw regexes into regexes; reject unknown names early."""
    if isinstance(targets, str):
        if targets in LORA_PRESETS:
            return LORA_PRESETS[targets]
        if re.fullmatch(r"[\w-]+", targets):
            raise GeodistillError(
                f"student.lora.targets: unknown preset {targets!r} (presets: {', '.join(LORA_PRESETS)}; "
                "or give module-name regexes)"
            )
        return [targets]
    return list(targets)


@dataclass
class LoraConfig:
    r: int = 8  # adapter rank; 0 trains the unfrozen base weights directly instead of adapters
    alpha: int = 16  # LoRA scaling numerator (scale = alpha / r)
    dropout: float = 0.05  # dropout on the adapter input
    targets: str | list[str] = "decoder-attn-qv"  # a preset name (see models.lora.LORA_PRESETS) or regexes


@dataclass
class CTCConfig(_Choices):
    """student.init: ctc: 2 Whisper-style 1-D convs -> ``layers`` Transformer blocks -> optional 3:1
    downsampling -> a linear CTC head. The defaults cost <= 25 % of tiny.en's encoder per second of audio
    (configs/ctc-cpu.yaml states the count)."""

    d_model: int = 192
    layers: int = 4
    heads: int = 3
    ffn: int = 768
    downsample: int = 1  # 1: one output frame per 20 ms | 3: Conv1d(k=3, s=3), one per 60 ms
    vocab: CTCVocab = "chars"
    dropout: float = 0.1  # in the Transformer blocks
    # copy the teacher's conv front end and first `layers` encoder blocks (needs d_model, heads and ffn
    # equal to the teacher's)
    init_from_teacher: bool = False
    # with init_from_teacher: keep the copied conv front end and first `frozen_layers` blocks frozen (no
    # gradient, no dropout): the teacher's acoustic layers, which a few hours of synthetic speech would
    # otherwise overwrite. 0 trains every weight.
    frozen_layers: int = 0


@dataclass
class StudentConfig(_Choices):
    # copy: keep chosen teacher layers | pretrained: another Whisper checkpoint | ctc: CNN + Transformer
    # CTC model (student.ctc)
    init: StudentInit = "copy"
    from_: str | None = None  # YAML key `from`: the pretrained student (init=pretrained)
    encoder_layers: int | list[int] | None = None  # count (evenly spaced, last kept), explicit list, None=all
    decoder_layers: int | list[int] | None = 2  # same rules as encoder_layers
    freeze_encoder: bool = True  # the seed's setup: only the decoder (adapters) and projector learn
    lora: LoraConfig = field(default_factory=LoraConfig)
    # full: the encoder always sees 30 s (1500 positions) | dynamic: the clip + context_margin positions
    audio_context: AudioContext = "full"
    context_margin: int = 64  # dynamic: encoder positions (20 ms each) after the clip's last frame
    # dynamic, training only: move the margin by a uniform integer in +-min(context_jitter, clip positions
    # // 3) (FUTO's audio-context fine-tuning uses 64); 0 disables
    context_jitter: int = 0
    ctc: CTCConfig = field(default_factory=CTCConfig)  # init: ctc only


@dataclass
class LossConfig(_Choices):
    ce_weight: float = 1.0  # weight of cross-entropy on the label tokens (student.init ctc: of the CTC loss)
    kl_weight: float = 0.020584  # final weight of KL(teacher||student) (seed value)
    kl_warmup_steps: int = 1000  # KL weight rises linearly 0 -> kl_weight over these steps
    temperature: float = 2.0  # softening temperature T; KL is scaled by T^2
    geo_weight: float = 0.969909  # weight of the hidden-state loss (seed value)
    hidden_loss: HiddenLoss = "geodesic"
    hidden_on: HiddenOn = "decoder"  # which states the hidden loss compares
    # decoder side: the last layer's states | every student decoder layer's, each against the teacher layer
    # it was copied from (evenly spaced for another Whisper), as audio-context fine-tuning does
    hidden_layers: HiddenLayers = "last"
    encoder_align: EncoderAlign = "pool"  # how teacher encoder frames are matched to the student's
    taid: TaidMode = "off"  # TAID replaces KL when on
    taid_start: float = 0.4  # adaptive: initial interpolation t (seed variant starts lambda at 0.1)
    taid_alpha: float = 5e-4  # adaptive: step size of the momentum update
    taid_beta: float = 0.99  # adaptive: momentum of the relative loss change

    @property
    def hidden_active(self) -> bool:
        """A hidden-state loss is on: a kind is chosen and its weight is above 0."""
        return self.hidden_loss != "none" and self.geo_weight > 0


@dataclass
class DataConfig:
    train: str | None = None  # data spec (folder, manifest, HF dataset; `kind:path` also accepted)
    val: str | None = None  # data spec; None = a speaker-disjoint split of `train`
    val_fraction: float = 0.1  # share of speakers held out when `val` is None
    val_limit: int | None = 64  # at most this many utterances for periodic validation WER
    min_duration: float = 1.0  # seconds; shorter items are skipped and reported
    max_duration: float = 30.0  # seconds; Whisper's window
    normalise_text: bool = False  # lower-case upper-case corpora (LibriSpeech) before tokenising
    language: str | None = None  # e.g. "en" for multilingual models; None = model default / English-only
    strict: bool = False  # stop at the first bad sample instead of skipping it


@dataclass
class TrainConfig(_Choices):
    max_steps: int = 10000  # optimiser steps
    warmup_steps: int = 1000  # linear warm-up, then cosine decay to 0
    lr: float = 2.6e-4  # AdamW peak learning rate (seed value)
    weight_decay: float = 0.01
    batch_size: int = 8  # per optimiser micro-step
    grad_accum: int = 1  # micro-batches per optimiser step
    clip: float = 1.0  # max global grad norm
    amp: AmpMode = "no"  # CUDA only; CPU trains fp32
    seed: int = 0
    eval_every: int = 500  # steps between validation WER runs (0 = only at the end)
    save_every: int = 500  # steps between checkpoints
    log_every: int = 10  # steps between TensorBoard/tqdm updates
    num_workers: int = 0  # DataLoader worker processes
    grad_checkpointing: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    teacher_device: str = "auto"  # where the frozen teacher lives ("cpu" saves GPU memory)
    max_bad_steps: int = 10  # consecutive non-finite steps before the run stops


@dataclass
class TuneConfig:
    n_trials: int = 50
    steps: int | None = None  # step budget per trial (None = train.max_steps)
    space: dict[str, Any] | None = None  # {param: {type: float|int|categorical, low, high, log, choices}}
    pruner_startup_trials: int = 5
    pruner_warmup_steps: int = 100


@dataclass
class AblateConfig:
    """``geodistill ablate``: which loss variants, how many seeds (see geodistill.ablate)."""

    variants: dict[str, Any] | None = None  # the user's own variants: {name: {dotted.key: value}}
    run: list[str] | None = None  # variant names to run (None = the built-in ones, then the user's)
    seeds: int = 3  # seeds per variant: train.seed, train.seed + 1, ...
    test: str | None = None  # data spec scored after each cell's training (test WER)


@dataclass
class Config:
    teacher: str = "tiny.en"  # model spec: embedded name, HF id/dir, or CTranslate2 dir
    student: StudentConfig = field(default_factory=StudentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    ablate: AblateConfig = field(default_factory=AblateConfig)
    run_dir: str = "runs/default"
    teacher_cache: str | None = None  # a teacher-output cache folder (see `geodistill cache`)
    # Also store the frozen cross-attention keys/values of the decoder layers a copy student keeps (when its
    # LoRA leaves encoder_attn k_proj/v_proj alone, e.g. the decoder-text-side preset): the cached step then
    # skips those projections over 1500 frames; costs 2 x 1500 x d_model x 2 bytes per layer and utterance.
    teacher_cache_cross_kv: bool = False


_RENAMES = {"from": "from_"}  # YAML keys that are Python keywords


def _to_yaml_key(name: str) -> str:
    return "from" if name == "from_" else name


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as a plain dict with YAML key names (``from`` rather than ``from_``)."""

    def rename(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {_to_yaml_key(k): rename(v) for k, v in obj.items()}
        return obj

    return rename(asdict(cfg))


def _build(cls: type, data: dict[str, Any], where: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in (data or {}).items():
        name = _RENAMES.get(key, key)
        if name not in names:
            problems.append(
                f"{where}{key}: unknown key (known: {', '.join(sorted(_to_yaml_key(n) for n in names))})"
            )
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                problems.append(f"{where}{key}: expected a mapping, got {value!r}")
                continue
            kwargs[name] = _build(hint, value, f"{where}{key}.", problems)
        else:
            kwargs[name] = _coerce(value, hint, f"{where}{key}", problems)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str, problems: list[str]) -> Any:
    """Accept ``value`` if it fits ``hint`` (ints widen to floats); otherwise record a problem."""
    if typing.get_origin(hint) is Literal:
        problem = _choice_problem(value, hint, where)
        if problem is None:
            return value
        problems.append(_ChoiceProblem(problem))
        return typing.get_args(hint)[0]  # a stand-in so validate() can still check the rest
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for opt in options:
        origin = typing.get_origin(opt) or opt
        if opt is type(None) and value is None:
            return None
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if origin is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin in (str, bool, list, dict) and isinstance(value, origin):
            return value
        if origin is Any:
            return value
    problems.append(f"{where}: expected {hint}, got {value!r}")
    return value


def _override_value(item: str, raw: str) -> Any:
    """The YAML value of one override; a ConfigError naming the override when it does not parse."""
    if not raw.strip():
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        reason = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({reason})") from None


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", "student.decoder_layers=[0,3]"]`` -> nested dict (values parsed as YAML).

    Raises ConfigError naming the override when it is not ``key=value``, its value is not YAML, or it
    contradicts an earlier one (``train.lr=1 train.lr.x=2``: train.lr cannot be both a value and a section).
    """
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=1e-4")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty part in the dotted key {key.strip()!r}")
        node = tree
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {item!r}: {where} was set to a value by an earlier override")
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"override {item!r}: earlier overrides set keys below {key.strip()}")
        node[parts[-1]] = _override_value(item, raw)
    return tree


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def config_error(problems: list[str]) -> ConfigError:
    """One line for one problem (``invalid config: train.lr: ...``), else one problem per line."""
    if len(problems) == 1:
        return ConfigError(f"invalid config: {problems[0]}")
    return ConfigError("invalid config:\n  " + "\n  ".join(problems))


class _ChoiceProblem(str):
    """A bad choice value, replaced by a valid stand-in: the config can still be validated around it."""


def _build_config(data: dict[str, Any]) -> tuple[Config, list[str]]:
    problems: list[str] = []
    cfg = _build(Config, data, "", problems)
    if any(not isinstance(p, _ChoiceProblem) for p in problems):  # wrong types: validate() cannot run
        raise config_error(problems)
    return cfg, problems


def from_dict(data: dict[str, Any]) -> Config:
    cfg, problems = _build_config(data)
    if problems:
        raise config_error(problems)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML preset (or start from defaults), apply dotted overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    cfg, problems = _build_config(merge(data, parse_overrides(overrides or [])))
    validate(cfg, problems)
    return cfg


def _check_layers(value: int | list[int] | None, where: str, problems: list[str]) -> None:
    if value is None:
        return
    if isinstance(value, int) and value < 1:
        problems.append(f"{where}: a layer count must be >= 1, got {value}")
    if isinstance(value, list) and (not value or any(not isinstance(i, int) or i < 0 for i in value)):
        problems.append(f"{where}: an explicit layer list must be non-empty indices >= 0, got {value}")


def _check_finite(obj: Any, where: str, problems: list[str]) -> None:
    """Every float field of a config (sub)tree must be finite: ``nan <= 0`` is False, so range checks
    alone let NaN through."""
    for f in fields(obj):
        value, key = getattr(obj, f.name), f"{where}{_to_yaml_key(f.name)}"
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{key}.", problems)
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{key}: must be a finite number, got {value}")


def _check_targets(lora: LoraConfig, problems: list[str]) -> None:
    """student.lora.targets: a known preset, or regexes that compile (caught here, not after the teacher
    loads)."""
    targets = lora.targets
    if isinstance(targets, list) and not all(isinstance(x, str) and x for x in targets):
        problems.append(f"student.lora.targets: a regex list must hold non-empty strings, got {targets!r}")
        return
    try:
        patterns = lora_patterns(targets)
    except GeodistillError as exc:
        problems.append(str(exc))
        return
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"student.lora.targets: {pattern!r} is not a valid regular expression ({exc})")


def _check_combinations(cfg: Config, problems: list[str]) -> None:
    """Settings that contradict each other (each would otherwise be ignored without a word)."""
    s, t = cfg.student, cfg.train
    if s.init == "copy" and s.from_:
        problems.append(
            f"student.from: {s.from_!r} is only used with student.init: pretrained (init is 'copy', "
            "which copies the teacher's layers); drop it or set init: pretrained"
        )
    if cfg.teacher_cache_cross_kv and not cfg.teacher_cache:
        problems.append("teacher_cache_cross_kv: true needs teacher_cache (the folder that stores them)")
    if t.amp != "no" and t.device.split(":")[0] in ("cpu", "mps"):
        problems.append(f"train.amp: {t.amp} needs CUDA but train.device is {t.device!r}; use amp: no")
    if s.init == "ctc":
        _check_ctc(cfg, problems)
    elif s.ctc != CTCConfig():
        problems.append(f"student.ctc: only used with student.init: ctc (init is {s.init!r}); drop it")
    if cfg.data.val_limit is not None and cfg.data.val_limit < 1:
        problems.append(f"data.val_limit: must be >= 1 (or null for all), got {cfg.data.val_limit}")


def _check_ctc(cfg: Config, problems: list[str]) -> None:
    """student.init: ctc: sizes, and loss settings a decoder-less student cannot honour."""
    c, lo = cfg.student.ctc, cfg.loss
    for name in ("d_model", "layers", "heads", "ffn"):
        if getattr(c, name) < 1:
            problems.append(f"student.ctc.{name}: must be >= 1, got {getattr(c, name)}")
    if c.heads >= 1 and c.d_model % c.heads:
        problems.append(f"student.ctc.d_model: {c.d_model} is not divisible by heads {c.heads}")
    if not 0 <= c.dropout < 1:
        problems.append(f"student.ctc.dropout: must be in [0, 1), got {c.dropout}")
    if c.downsample not in (1, 3):
        problems.append(f"student.ctc.downsample: must be 1 or 3, got {c.downsample}")
    if not 0 <= c.frozen_layers <= c.layers:
        problems.append(
            f"student.ctc.frozen_layers: must be in [0, layers={c.layers}], got {c.frozen_layers}"
        )
    elif c.frozen_layers and not c.init_from_teacher:
        problems.append(
            "student.ctc.frozen_layers: freezes copied teacher blocks; needs init_from_teacher: true "
            "(random blocks would stay random)"
        )
    if lo.hidden_active and lo.hidden_on != "encoder":
        problems.append(
            f"loss.hidden_on: a ctc student has no decoder, only encoder states to compare; got "
            f"{lo.hidden_on!r} (use encoder, or hidden_loss: none)"
        )
    if lo.taid != "off":
        problems.append(f"loss.taid: {lo.taid!r} needs a decoder; a ctc student has none (use off)")


def validate(cfg: Config, earlier: list[str] | None = None) -> None:
    """Check value ranges and combinations; raise one ConfigError listing every problem (``earlier``
    ones, found while loading, first)."""
    p: list[str] = list(earlier or [])
    s, lo, d, t = cfg.student, cfg.loss, cfg.data, cfg.train
    _check_finite(cfg, "", p)
    _check_combinations(cfg, p)
    if s.lora.r > 0:
        _check_targets(s.lora, p)
    if s.init == "pretrained" and not s.from_:
        p.append("student.from: required when student.init is 'pretrained'")
    _check_layers(s.encoder_layers, "student.encoder_layers", p)
    _check_layers(s.decoder_layers, "student.decoder_layers", p)
    if not 0 <= s.context_margin <= 1500:
        p.append(f"student.context_margin: must be in 0..1500 encoder positions, got {s.context_margin}")
    if s.context_jitter < 0:
        p.append(f"student.context_jitter: must be >= 0, got {s.context_jitter}")
    if s.lora.r < 0 or s.lora.alpha <= 0 or not 0 <= s.lora.dropout < 1:
        p.append("student.lora: need r >= 0, alpha > 0, 0 <= dropout < 1")
    for name in ("ce_weight", "kl_weight", "geo_weight"):
        if getattr(lo, name) < 0:
            p.append(f"loss.{name}: must be >= 0, got {getattr(lo, name)}")
    if lo.temperature <= 0:
        p.append(f"loss.temperature: must be > 0, got {lo.temperature}")
    if not 0 <= lo.taid_start < 1:
        p.append(f"loss.taid_start: must be in [0, 1), got {lo.taid_start}")
    if d.min_duration < 0 or d.max_duration <= d.min_duration:
        p.append(f"data: need 0 <= min_duration < max_duration, got {d.min_duration}..{d.max_duration}")
    if d.max_duration > 30.0:
        p.append(f"data.max_duration: Whisper sees at most 30 s, got {d.max_duration}")
    if not 0 < d.val_fraction < 1:
        p.append(f"data.val_fraction: must be in (0, 1), got {d.val_fraction}")
    for name in ("max_steps", "batch_size", "grad_accum", "log_every", "max_bad_steps"):
        if getattr(t, name) < 1:
            p.append(f"train.{name}: must be >= 1, got {getattr(t, name)}")
    for name in ("warmup_steps", "eval_every", "save_every", "num_workers"):
        if getattr(t, name) < 0:
            p.append(f"train.{name}: must be >= 0, got {getattr(t, name)}")
    if t.lr <= 0 or t.weight_decay < 0 or t.clip <= 0:
        p.append("train: need lr > 0, weight_decay >= 0, clip > 0")
    if not cfg.run_dir:
        p.append("run_dir: must be set")
    if p:
        raise config_error(p)
