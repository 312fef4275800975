"""The config's schema: a tree of dataclasses, one comment per field; choice fields are ``Literal`` types."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from geodistill.config.errors import ConfigError, choice_problem

# Choice fields: the Literal type is the one list of choices; loading checks it once (``load._coerce``).
HiddenLoss = Literal["geodesic", "mse", "none"]
HiddenOn = Literal["decoder", "encoder", "both"]
EncoderAlign = Literal["pool", "interpolate"]
TaidMode = Literal["off", "seed", "adaptive"]
AmpMode = Literal["no", "fp16", "bf16"]
# A student family's init: the registry (geodistill.students.FAMILIES) knows them, and building a run
# refuses an unknown one in one line naming the families, so a new family needs no change here.
StudentInit = str
HiddenLayers = Literal["last", "all"]
AudioContext = Literal["full", "dynamic"]  # as geodistill.models.context.AUDIO_CONTEXTS
Vocab = Literal["full", "trimmed"]  # as geodistill.models.trim.VOCABS
Task = Literal["transcribe", "translate"]  # as geodistill.data.tokens.TASKS
# student.ctc.vocab: "chars" (blank, space, apostrophe, a-z: geodistill.students.ctc.loss.CHARS) or "bpe:N"
# (N sentencepiece BPE units trained on the run's training transcripts, + the blank)
CTC_UNIT_KINDS = ("chars", "bpe")


def ctc_vocab(spec: str) -> tuple[str, int | None]:
    """("chars", None) or ("bpe", N) of a ``student.ctc.vocab`` value; ConfigError (one line) otherwise."""
    kind, _, size = str(spec).partition(":")
    if kind == "chars" and not size:
        return "chars", None
    if kind == "bpe" and size.isdigit() and int(size) >= 2:
        return "bpe", int(size)
    hint = "bpe:N needs a unit count N >= 2, e.g. bpe:256" if kind == "bpe" else "unknown unit type"
    raise ConfigError(f"student.ctc.vocab: {spec!r}: {hint} (use chars or bpe:N)")


# train.report_to: where training metrics go (geodistill.train.trackers); "none" alone turns logging off.
TRACKERS = ("tensorboard", "wandb", "mlflow")


def tracker_names(report_to: str | list[str]) -> list[str]:
    """``train.report_to`` as a list of tracker names: "none" (or an empty list) -> [], a name -> [name]."""
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    return [] if names == ["none"] else names


class _Choices:
    """Checks the ``Literal`` (choice) fields of a config section built directly in code; loading from
    YAML checks them earlier, while collecting every problem (``load._coerce``)."""

    def __post_init__(self) -> None:
        section = _SECTIONS.get(type(self).__name__, "")
        for name, hint in typing.get_type_hints(type(self)).items():
            if typing.get_origin(hint) is Literal:
                problem = choice_problem(getattr(self, name), hint, f"{section}{name}")
                if problem:
                    raise ConfigError(problem)


_SECTIONS = {
    "DataConfig": "data.",
    "CTCConfig": "student.ctc.",
    "StudentConfig": "student.",
    "LossConfig": "loss.",
    "TrainConfig": "train.",
}


@dataclass
class LoraConfig:
    r: int = 8  # adapter rank; 0 trains the unfrozen base weights directly instead of adapters
    alpha: int = 16  # LoRA scaling numerator (scale = alpha / r)
    dropout: float = 0.05  # dropout on the adapter input
    targets: str | list[str] = "decoder-attn-qv"  # a preset name (see config.lora.LORA_PRESETS) or regexes


@dataclass
class CTCConfig(_Choices):
    """student.init: ctc: 2 Whisper-style 1-D convs -> ``layers`` Transformer blocks -> optional 3:1
    downsampling -> a linear CTC head. The defaults cost <= 25 % of tiny.en's encoder per second of audio
    (the ctc-cpu preset states the count)."""

    d_model: int = 192
    layers: int = 4
    heads: int = 3
    ffn: int = 768
    downsample: int = 1  # 1: one output frame per 20 ms | 3: Conv1d(k=3, s=3), one per 60 ms
    vocab: str = "chars"  # chars | bpe:N (N BPE units trained on data.train's transcripts; see ctc_vocab)
    dropout: float = 0.1  # in the Transformer blocks
    # copy the teacher's conv front end and first `layers` encoder blocks (needs d_model, heads and ffn
    # equal to the teacher's)
    init_from_teacher: bool = False
    # with init_from_teacher: keep the copied conv front end and first `frozen_layers` blocks frozen (no
    # gradient, no dropout): the teacher's acoustic layers, which a few hours of synthetic speech would
    # otherwise overwrite. 0 trains every weight.
    frozen_layers: int = 0
    init: ClassVar[str] = "ctc"  # the student.init this section belongs to (config.checks.family_sections)

    def problems(self, lo: LossConfig) -> list[str]:
        """Its sizes, and the loss settings a decoder-less student cannot honour (when init is ctc)."""
        c, problems = self, []
        for name in ("d_model", "layers", "heads", "ffn"):
            if getattr(c, name) < 1:
                problems.append(f"student.ctc.{name}: must be >= 1, got {getattr(c, name)}")
        if c.heads >= 1 and c.d_model % c.heads:
            problems.append(f"student.ctc.d_model: {c.d_model} is not divisible by heads {c.heads}")
        if not 0 <= c.dropout < 1:
            problems.append(f"student.ctc.dropout: must be in [0, 1), got {c.dropout}")
        try:
            ctc_vocab(c.vocab)
        except ConfigError as exc:
            problems.append(str(exc))
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
        return problems


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
    # full: logits over Whisper's whole vocabulary | trimmed: only over the ids the training transcripts use,
    # the special ids, the 256 byte tokens and the teacher cache's top-k ids the teacher gives at least
    # vocab_min_prob somewhere (geodistill.models.trim); the saved model stays a full-size tied Whisper,
    # its other ids suppressed. 0 keeps every cached top-k id (18,032 of 51,864 for the demo-sized grid's
    # top-64 cache, 4,743 at 0.001)
    vocab: Vocab = "full"
    vocab_min_prob: float = 0.001
    ctc: CTCConfig = field(default_factory=CTCConfig)  # init: ctc only


def family_sections(student: StudentConfig) -> list[tuple[str, Any]]:
    """(name, section) of the student's family sections: fields whose value names the init it serves."""
    sections = ((f.name, getattr(student, f.name)) for f in fields(student))
    return [(name, v) for name, v in sections if isinstance(getattr(type(v), "init", None), str)]


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
class AugmentConfig:
    """data.augment: on-the-fly augmentation of the training audio, drawn afresh each epoch from (train.seed,
    epoch, utterance id), so a resumed run sees the very same draws (geodistill.data.augment). All off by
    default; validation, evaluation and the teacher cache always see the clean audio."""

    # speed perturbation (tempo and pitch, as Kaldi's): factor uniform in [1 - speed, 1 + speed]; 0 off
    speed: float = 0.0
    noise: float = 0.0  # share of utterances with white noise added (0 off)
    noise_snr_min: float = 10.0  # dB: the noise's signal-to-noise ratio is uniform in [min, max]
    noise_snr_max: float = 30.0
    time_masks: int = 0  # SpecAugment: log-Mel time masks per utterance (within the clip, not the padding)
    time_mask_frames: int = 20  # the widest time mask, in 10-ms Mel frames (width uniform in 0..this)
    freq_masks: int = 0  # SpecAugment: log-Mel frequency masks per utterance
    freq_mask_bins: int = 10  # the widest frequency mask, in Mel bins

    @property
    def active(self) -> bool:
        """Any augmentation is on."""
        return self.speed > 0 or self.noise > 0 or self.time_masks > 0 or self.freq_masks > 0

    def problems(self) -> list[str]:
        """Ranges, each a line naming its field."""
        a, out = self, []
        if not 0 <= a.speed < 0.5:
            out.append(f"data.augment.speed: must be in [0, 0.5), got {a.speed}")
        if not 0 <= a.noise <= 1:
            out.append(f"data.augment.noise: a share, must be in [0, 1], got {a.noise}")
        if a.noise_snr_min > a.noise_snr_max:
            out.append(
                f"data.augment.noise_snr_min: {a.noise_snr_min} is above noise_snr_max {a.noise_snr_max}"
            )
        for name in ("time_masks", "time_mask_frames", "freq_masks", "freq_mask_bins"):
            if getattr(a, name) < 0:
                out.append(f"data.augment.{name}: must be >= 0, got {getattr(a, name)}")
        return out


@dataclass
class DataConfig(_Choices):
    train: str | None = None  # data spec (folder, manifest, HF dataset; `kind:path` also accepted)
    val: str | None = None  # data spec; None = a speaker-disjoint split of `train`
    val_fraction: float = 0.1  # share of speakers held out when `val` is None
    val_limit: int | None = 64  # at most this many utterances for periodic validation WER
    min_duration: float = 1.0  # seconds; shorter items are skipped and reported
    max_duration: float = 30.0  # seconds; Whisper's window
    normalise_text: bool = False  # lower-case upper-case corpora (LibriSpeech) before tokenising
    # e.g. "en": the prompt language of rows without their own (a manifest's / dataset's language column);
    # None = English-only models, or every row names its language
    language: str | None = None
    task: Task = "transcribe"  # of rows without their own `task` column: transcribe | translate (to English)
    # share of utterances with a timestamped transcript (`text_timestamps`, e.g. from `geodistill data
    # pseudo-label --timestamps`) trained on it, with a prompt without <|notimestamps|>; the choice is fixed
    # per utterance by train.seed and its id. distil-whisper trains with 0.2 (its default).
    timestamp_probability: float = 0.0
    strict: bool = False  # stop at the first bad sample instead of skipping it
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training audio only, seeded


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
    log_every: int = 10  # steps between tracker/tqdm updates
    # tensorboard | wandb | mlflow, or a list of them, or none (see TRACKERS; credentials only from the
    # environment, never from here: this config is saved in the run folder)
    report_to: str | list[str] = field(default_factory=lambda: ["tensorboard"])
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


def field_name(key: str) -> str:
    """The dataclass field of a YAML key (``from`` -> ``from_``)."""
    return _RENAMES.get(key, key)


def yaml_key(name: str) -> str:
    """The YAML key of a dataclass field (``from_`` -> ``from``)."""
    return "from" if name == "from_" else name
