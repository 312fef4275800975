"""Training a dynamic-audio-context student from a full-context teacher: what the encoder sees, that the
teacher still sees 30 s, deterministic jitter (exact resume), an old cache, and the saved context."""

from __future__ import annotations

import json

import torch

from geodistill.config import load_config
from geodistill.losses import DistillationLoss
from geodistill.models import load_whisper
from geodistill.teacher.cache import BuildOptions, CacheOptions, build_cache
from geodistill.train.loop import compute_loss, train
from geodistill.train.setup import build_run

DYNAMIC = {"audio_context": "dynamic", "context_margin": 8, "decoder_layers": 1, "freeze_encoder": False}


def _positions_seen(module: torch.nn.Module) -> list[int]:
    seen: list[int] = []
    module.layers[0].register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    return seen


def test_student_encoder_sees_the_clip_plus_margin_and_the_teacher_sees_30_s(make_config):
    torch.manual_seed(0)
    run = build_run(load_config(make_config("dyn", student=DYNAMIC)))
    assert not run.student.shares_encoder and run.student.cross_kv == {}
    student_seen = _positions_seen(run.student.whisper.model.encoder)
    teacher_seen = _positions_seen(run.teacher.model.model.encoder)
    batch = run.collate([run.train_set[i] for i in range(2)])
    longest = float(batch["audio_seconds"].max())
    total, _ = compute_loss(run, DistillationLoss(run.cfg.loss), batch, step=1)
    assert torch.isfinite(total)
    assert teacher_seen == [1500]
    # ceil(clip / 20 ms) positions + the margin: a 1.3-s clip sees ~65 + 8, not 1500
    assert student_seen == [int(-(-longest * 16000 // 160) + 1) // 2 + 8] and student_seen[0] < 100


def test_margin_jitter_is_drawn_from_the_batch_so_a_resume_sees_the_same_contexts(make_config):
    student = {**DYNAMIC, "context_margin": 30, "context_jitter": 64}
    run = build_run(load_config(make_config("jit", student=student)))
    batches = [run.collate([run.train_set[i], run.train_set[i + 1]]) for i in range(0, 8, 2)]
    run.student.whisper.train()
    first = [run.student.context_frames(b) for b in batches]
    again = [run.student.context_frames(b) for b in batches]
    assert first == again  # the same batch always gets the same context
    run.student.whisper.eval()
    plain = [run.student.context_frames(b) for b in batches]
    assert plain != first  # training moves the margin, evaluation does not


def test_a_cache_built_before_trains_a_dynamic_student(make_config, tmp_path, tiny_teacher_dir, tiny_data):
    # The teacher's outputs do not depend on the student's context: a cache from a full-context build serves.
    cache = build_cache(
        str(tiny_teacher_dir), str(tiny_data[0]), tmp_path / "cache", CacheOptions(top_k=8), BuildOptions()
    )
    overrides = {
        "train": {"max_steps": 2, "eval_every": 0, "save_every": 0, "batch_size": 2, "grad_accum": 1}
    }
    cfg = load_config(make_config("cached", student=DYNAMIC, teacher_cache=str(cache), **overrides))
    result = train(cfg)
    assert result.exit_code == 0 and all(
        torch.isfinite(torch.tensor(r["total"])) for r in result.history["train"]
    )
    saved = json.loads((result.run_dir / "adapter_final" / "config.json").read_text())
    assert (saved["geodistill_audio_context"], saved["geodistill_context_margin"]) == ("dynamic", 8)
    model, _ = load_whisper(str(result.run_dir / "adapter_final"))
    assert model.config.geodistill_audio_context == "dynamic"
