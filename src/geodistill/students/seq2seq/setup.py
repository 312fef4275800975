"""A run with a Whisper student: the student, the teacher signal it can take, and its data."""

from __future__ import annotations

import logging

from geodistill.config import Config
from geodistill.data import BadSamples, WhisperCollator
from geodistill.data.sets import build_data
from geodistill.errors import GeodistillError
from geodistill.models.trim import install_trimmed_head, kept_ids
from geodistill.students.family import RunParts, TeacherSide
from geodistill.students.seq2seq.model import WhisperStudent, build_whisper_student
from geodistill.students.seq2seq.sharing import encoder_shared, provided_cross_kv, shared_cross_kv
from geodistill.teacher.cache import CachedTeacher
from geodistill.teacher.factory import make_teacher
from geodistill.teacher.vocab import InStudentVocab

log = logging.getLogger("geodistill")


def build(cfg: Config, side: TeacherSide, bad: BadSamples, device) -> RunParts:
    """The student (+ what it shares with its teacher), the provider handing over what it takes, the data."""
    teacher, t_config = side.model, side.config
    student = build_whisper_student(cfg, teacher, side.processor, t_config, device)
    shares = encoder_shared(cfg, teacher, student.whisper)
    cross_kv = shared_cross_kv(cfg, teacher, student.whisper, shares)
    provider = side.provider
    if provider is None:
        assert teacher is not None  # train.setup leaves it unloaded only when a cache provider stands in
        provider = make_teacher(cfg, (teacher, side.processor), cross_kv_layers=tuple(cross_kv.values()))
    cache = provider if isinstance(provider, CachedTeacher) else None  # before any wrapper: its top-k ids
    if student.vocab_map is not None:  # a large-v3 / turbo teacher over a smaller multilingual student
        provider = InStudentVocab(provider, student.vocab_map)
    offer = provider.offer
    student.shares_encoder = shares
    student.cross_kv = provided_cross_kv(cfg, cross_kv, offer, t_config["d_model"])
    if student.layer_map and not offer.every_decoder_layer:
        raise GeodistillError(
            "loss.hidden_layers: all needs a teacher that hands over every decoder layer's states "
            "(the online teacher; a cache stores the last layer only)"
        )
    if shares and offer.encoder_pool:
        raise GeodistillError(
            f"teacher_cache: encoder states pooled by {offer.encoder_pool} cannot "
            "stand in for the shared frozen encoder's output; rebuild without encoder_pool"
        )
    # Cached encoder states replace the student's encoder input: no log-Mel features to compute per step.
    cached_encoder = shares and offer.encoder_states and not offer.reads_features
    processor = student.processor
    theirs = side.processor.feature_extractor
    # a teacher run online on other Mels than the student's (large-v3's 128 over 80) gets its own features
    other_mels = offer.reads_features and theirs.feature_size != processor.feature_extractor.feature_size
    train_set, val, prompt = build_data(
        cfg,
        processor,
        student.whisper,
        bad,
        with_features=not cached_encoder,
        teacher_extractor=theirs if other_mels else None,
    )
    if cfg.student.vocab == "trimmed":
        cached_topk = cache.topk_ids(cfg.student.vocab_min_prob) if cache is not None else []
        trim(student, train_set, cached_topk)
    collate = WhisperCollator(prompt or None, processor.tokenizer.pad_token_id)
    return RunParts(student, provider, train_set, val, collate, prompt)


def trim(student: WhisperStudent, train_set, cached_topk: list[int]) -> None:
    """``student.vocab: trimmed``: the student's head keeps the ids of the training labels, the specials, the
    byte tokens and the teacher cache's likely top-k ids (``geodistill.models.trim``). The KL renormalises
    the teacher over the ids the student can emit, from full logits or from the top-k (``losses.kd``)."""
    if not train_set.utts:
        raise GeodistillError(
            "student.vocab: trimmed keeps the token ids of data.train's transcripts, and a streamed "
            "data.train lists none up front; use a listed data.train or vocab: full"
        )
    if student.vocab_map is not None:  # the cache's ids are the teacher's: in the student's ids
        to_student = {t: s for s, t in enumerate(student.vocab_map.to_teacher_ids)}
        cached_topk = [to_student[t] for t in cached_topk if t in to_student]
    whisper = student.whisper
    size = int(whisper.config.vocab_size)
    kept = kept_ids(student.processor.tokenizer, size, train_set.label_ids(), cached_topk)
    install_trimmed_head(whisper, kept)
    log.info("student vocabulary trimmed: logits over %d of %d ids (student.vocab: trimmed)", len(kept), size)
