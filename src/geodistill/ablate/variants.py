"""Loss variants: named sets of dotted config overrides, checked before any compute.

A variant may change the loss and the optimiser, not what makes the comparison fair: the teacher (and
its cache), the data, the student's architecture, the step budget or the seed.
"""

from __future__ import annotations

from typing import Any

from geodistill.config import Config, ConfigError, LossConfig, to_dict
from geodistill.students import DEFAULT, family_for_init
from geodistill.tune.space import config_leaf, trial_config

# A Whisper student's six; each family names its own (a CTC student: "ce" is its CTC loss, no KL or TAID).
DEFAULT_NAMES = DEFAULT.ablation_variants
# Prefixes a variant may not set, with the reason shown in the error.
FORBIDDEN = {
    "teacher": "the teacher is shared by every cell",
    "teacher_cache": "the teacher cache is built once for every cell",
    "teacher_cache_cross_kv": "the teacher cache is built once for every cell",
    "data": "every cell trains and validates on the same data",
    "train.max_steps": "every cell has the same step budget",
    "train.seed": "the seed is the grid's other axis (ablate.seeds)",
    "student.init": "every cell distils the same student",
    "student.from": "every cell distils the same student",
    "student.encoder_layers": "every cell distils the same student",
    "student.decoder_layers": "every cell distils the same student",
    "run_dir": "each cell's run folder is set by the ablation",
    "tune": "not a training setting",
    "ablate": "not a training setting",
}


def _weight(value: float, field_name: str) -> float:
    """The base config's weight, or the seed's default when the base switched that term off."""
    return value if value > 0 else getattr(LossConfig(), field_name)


def default_names(cfg: Config) -> tuple[str, ...]:
    """The built-in variants an ablation of ``cfg``'s student runs when ``ablate.run`` is not set."""
    return family_for_init(cfg.student.init).ablation_variants


def default_variants(cfg: Config) -> dict[str, dict[str, Any]]:
    """The built-in variants its student family names (``default_names``), using the base config's KL and
    hidden-loss weights (seed values if 0): six for a Whisper student, three for a CTC student (CTC alone,
    + MSE, + geodesic on the encoder states)."""
    lo = cfg.loss
    kl, geo = _weight(lo.kl_weight, "kl_weight"), _weight(lo.geo_weight, "geo_weight")
    ce = _weight(lo.ce_weight, "ce_weight")
    off = {"loss.taid": "off"}
    no_hidden = {"loss.hidden_loss": "none", "loss.geo_weight": 0.0}
    labels_only = {"loss.ce_weight": ce, "loss.kl_weight": 0.0, **off}  # CE, or CTC for a CTC student
    known = {
        "ce": {**labels_only, **no_hidden},
        "ce+mse": {**labels_only, "loss.hidden_loss": "mse", "loss.geo_weight": geo},
        "ce+geo": {**labels_only, "loss.hidden_loss": "geodesic", "loss.geo_weight": geo},
        "ce+kl": {"loss.ce_weight": ce, "loss.kl_weight": kl, **no_hidden, **off},
        "ce+kl+mse": {
            "loss.ce_weight": ce,
            "loss.kl_weight": kl,
            "loss.hidden_loss": "mse",
            "loss.geo_weight": geo,
            **off,
        },
        "ce+kl+geo": {
            "loss.ce_weight": ce,
            "loss.kl_weight": kl,
            "loss.hidden_loss": "geodesic",
            "loss.geo_weight": geo,
            **off,
        },
        "ce+kl+geo+taid": {
            "loss.ce_weight": ce,
            "loss.kl_weight": kl,
            "loss.hidden_loss": "geodesic",
            "loss.geo_weight": geo,
            "loss.taid": "adaptive",
        },
        "kl+geo": {
            "loss.ce_weight": 0.0,
            "loss.kl_weight": kl,
            "loss.hidden_loss": "geodesic",
            "loss.geo_weight": geo,
            **off,
        },
    }
    return {name: known[name] for name in default_names(cfg)}


def _flatten(overrides: Any, prefix: str = "") -> dict[str, Any]:
    """``{"loss": {"kl_weight": 0}}`` or ``{"loss.kl_weight": 0}`` -> ``{"loss.kl_weight": 0}``."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        out.update(_flatten(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return out


def _check_variant(cfg: Config, name: str, overrides: Any, problems: list[str]) -> dict[str, Any] | None:
    where = f"ablate.variants.{name}"
    if not isinstance(overrides, dict) or not overrides:
        problems.append(f"{where}: expected a non-empty mapping of config keys to values, got {overrides!r}")
        return None
    flat, tree, bad = _flatten(overrides), to_dict(cfg), False
    for key in flat:
        reason = next((r for p, r in FORBIDDEN.items() if key == p or key.startswith(p + ".")), None)
        if reason is not None:
            problems.append(f"{where}.{key}: a variant may not change it ({reason})")
            bad = True
        elif not config_leaf(tree, key, f"{where}.{key}", problems):
            bad = True
    if bad:
        return None
    try:
        trial_config(cfg, flat, cfg.run_dir, 1)
    except ConfigError as exc:
        reasons = "; ".join(line.strip() for line in str(exc).splitlines()[1:]) or str(exc)
        problems.append(f"{where}: gives an invalid config ({reasons.removeprefix('invalid config: ')})")
        return None
    return flat


def ablation_variants(cfg: Config) -> dict[str, dict[str, Any]]:
    """{name: dotted overrides} of the variants this ablation runs, in order; one ConfigError lists every
    unknown name, unknown or forbidden key, and override that makes an invalid config."""
    a = cfg.ablate
    known = {**default_variants(cfg), **(a.variants or {})}
    defaults = default_names(cfg)
    names = list(a.run) if a.run is not None else list(dict.fromkeys([*defaults, *(a.variants or {})]))
    problems: list[str] = []
    if not names:
        problems.append("ablate.run: no variant to run")
    if len(set(names)) != len(names):
        problems.append(f"ablate.run: a variant is named twice in {names}")
    if a.seeds < 1:
        problems.append(f"ablate.seeds: must be >= 1, got {a.seeds}")
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        if not isinstance(name, str) or name not in known:
            problems.append(
                f"ablate.run: unknown variant {name!r} (known: {', '.join(known)}; "
                "define your own under ablate.variants)"
            )
            continue
        flat = _check_variant(cfg, name, known[name], problems)
        if flat is not None:
            out[name] = flat
    if problems:
        raise ConfigError("invalid ablation: " + "; ".join(problems))  # one line, as every error
    return out


def ablation_seeds(cfg: Config) -> list[int]:
    """train.seed, train.seed + 1, ... (ablate.seeds of them): a seed gives every variant one data order."""
    return [cfg.train.seed + i for i in range(cfg.ablate.seeds)]
