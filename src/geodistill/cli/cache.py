"""``geodistill cache --teacher T --data SPEC --out DIR``: store the teacher's outputs once."""

from __future__ import annotations

import argparse

from geodistill.cli._common import NON_NEGATIVE, POSITIVE_INT, check_durations, number, size


def register(sub) -> None:
    q = sub.add_parser("cache", help="run the teacher once over the data and store its outputs")
    q.add_argument("--teacher", required=True)
    q.add_argument("--data", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--top-k", type=POSITIVE_INT, default=64)
    q.add_argument("--full-logits", action="store_true", help="store the full-vocabulary logits too")
    q.add_argument("--batch-size", type=POSITIVE_INT, default=8)
    q.add_argument(
        "--shard-size",
        type=POSITIVE_INT,
        default=64,
        help="utterances a shard; shards are split over torchrun ranks",
    )
    q.add_argument("--device", default="auto")
    q.add_argument("--language", default=None)
    q.add_argument(
        "--temperatures",
        type=number(float, 0.0, inclusive=False),
        nargs="+",
        default=[2.0],
        help="KL temperatures to store the exact logsumexp for (the run's loss.temperature)",
    )
    q.add_argument("--normalise-text", action="store_true", help="as data.normalise_text in the run")
    q.add_argument("--min-duration", type=NON_NEGATIVE, default=1.0)
    q.add_argument("--max-duration", type=number(float, 0.0, inclusive=False), default=30.0)
    q.add_argument(
        "--encoder-pool", type=POSITIVE_INT, default=None, help="store encoder states averaged over N frames"
    )
    q.add_argument(
        "--encoder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="store the last encoder states (1500 x d_model an utterance); default: when --config's run "
        "reads them (a frozen encoder shared with the teacher, an encoder hidden loss), else not",
    )
    q.add_argument("--config", default=None, help="the run config this cache is for (decides --encoder)")
    q.add_argument(
        "--max-size", type=size, default=None, help="refuse a cache estimated larger, e.g. 50G (2^30 bytes)"
    )
    q.add_argument(
        "--cross-kv-layers",
        type=number(int, 0),
        nargs="+",
        default=[],
        help="teacher decoder layers whose cross-attention keys/values to store (the layers a copy "
        "student keeps, when its LoRA leaves encoder_attn k/v frozen)",
    )
    q.set_defaults(fn=_cache)


def _cache(a: argparse.Namespace) -> int:
    # imported in the handler: --help stays fast (torch, transformers)
    from geodistill.teacher.cache import BuildOptions, CacheOptions, build_cache  # noqa: PLC0415

    check_durations(a)
    options = CacheOptions(
        top_k=a.top_k,
        full_logits=a.full_logits,
        store_encoder=_store_encoder(a),
        encoder_pool=a.encoder_pool,
        temperatures=tuple(a.temperatures),
        cross_kv_layers=tuple(a.cross_kv_layers),
    )
    build = BuildOptions(
        batch_size=a.batch_size,
        shard_size=a.shard_size,
        device=a.device,
        language=a.language,
        normalise_text=a.normalise_text,
        min_duration=a.min_duration,
        max_duration=a.max_duration,
        max_size=a.max_size,
    )
    print(build_cache(a.teacher, a.data, a.out, options, build))
    return 0


def _store_encoder(a: argparse.Namespace) -> bool:
    """--encoder / --no-encoder when given, else whether the --config run reads encoder states (no config:
    no encoder states; a run that needs them says so, naming the field, when it reads the cache)."""
    if a.encoder is not None:
        return a.encoder
    if a.config is None:
        return False
    # imported here: --help stays fast
    from geodistill.config import load_config  # noqa: PLC0415
    from geodistill.models.loading import encoder_layer_count  # noqa: PLC0415
    from geodistill.teacher.factory import encoder_states_read  # noqa: PLC0415

    return encoder_states_read(load_config(a.config, []), encoder_layer_count(a.teacher))
