"""loss.hidden_layers: all — every student decoder layer against the teacher layer it was copied from."""

from __future__ import annotations

import pytest
import torch

from geodistill.config import load_config
from geodistill.errors import GeodistillError
from geodistill.losses import DistillationLoss, GeodesicLoss
from geodistill.losses.kd import valid_mask
from geodistill.models.forward import forward_states
from geodistill.teacher.cache import BuildOptions, CacheOptions, build_cache
from geodistill.train.loop import compute_loss
from geodistill.train.setup import build_run

ALL = {"hidden_layers": "all", "hidden_loss": "geodesic", "kl_warmup_steps": 0}


def test_every_kept_layer_is_compared_with_its_source_layer(make_config):
    # The tiny teacher has 2 decoder layers; a 1-layer copy keeps the last (layer 1).
    run = build_run(load_config(make_config("all", loss=ALL)))
    assert run.student.layer_map == {0: 1} and set(run.student.projectors) == {"decoder_0"}
    assert run.teacher.offer.every_decoder_layer
    run.student.trainable.eval()
    batch = run.collate([run.train_set[i] for i in range(2)])
    loss_fn = DistillationLoss(run.cfg.loss)
    _, parts = compute_loss(run, loss_fn, batch, step=1)
    # By hand: the student's only layer (projected) against the teacher's last layer, on label positions.
    keep = valid_mask(batch["labels"])
    with torch.no_grad():
        t = forward_states(
            run.teacher.model, batch["decoder_input_ids"], batch["input_features"], every_layer=True
        )
        s = forward_states(
            run.student.whisper, batch["decoder_input_ids"], batch["input_features"], every_layer=True
        )
        expect = GeodesicLoss()(
            run.student.projectors["decoder_0"](s.decoder_layers[0][keep][None]),
            t.decoder_layers[1][keep][None],
            torch.ones(1, int(keep.sum()), dtype=torch.bool),
        )
    assert parts["hidden_dec"].item() == pytest.approx(expect.item(), rel=1e-5)


def test_two_kept_layers_map_to_their_source_layers(make_config):
    student = {"decoder_layers": 2}
    run = build_run(load_config(make_config("two", student=student, loss=ALL)))
    assert run.student.layer_map == {0: 0, 1: 1}
    batch = run.collate([run.train_set[i] for i in range(2)])
    total, parts = compute_loss(run, DistillationLoss(run.cfg.loss), batch, step=1)
    assert torch.isfinite(total) and parts["hidden_dec"] > 0
    # the last layer's own states in the per-layer dict are the final (layer-normed) decoder states
    out = forward_states(
        run.teacher.model, batch["decoder_input_ids"], batch["input_features"], every_layer=True
    )
    assert torch.equal(out.decoder_layers[1], out.decoder_hidden)


def test_a_cache_cannot_serve_every_layer(make_config, tmp_path, tiny_teacher_dir, tiny_data):
    cache = build_cache(
        str(tiny_teacher_dir), str(tiny_data[0]), tmp_path / "c", CacheOptions(top_k=8), BuildOptions()
    )
    cfg = load_config(make_config("cached", loss=ALL, teacher_cache=str(cache)))
    with pytest.raises(GeodistillError, match="loss.hidden_layers: all needs the online teacher"):
        build_run(cfg)
