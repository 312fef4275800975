"""Can a CTC student learn at all? Train it on one fixed batch of clips and watch its greedy transcript.

A CTC model first emits only blanks (WER 100 %) until its alignments form; a long run that stays there is
either slow or broken. This check separates the two in minutes: with the loss, labels and features the
training loop uses, a working model leaves the blank plateau on a handful of clips within ~100 steps.

    python scripts/ctc_overfit.py runs/synth/train.jsonl --clips 8 --steps 150 --lr 1e-3

Prints step, CTC loss, seconds and the first clip's greedy transcript every 25 steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from geodistill.data import load_audio, load_spec
from geodistill.models.loading import load_whisper
from geodistill.students.ctc.decode import clip_features
from geodistill.students.ctc.loss import CTCLoss, text_to_labels
from geodistill.students.ctc.model import CTCModel, CTCShape, ctc_greedy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a data spec; its first --clips utterances form the batch")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--d-model", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--ffn", type=int, default=768)
    p.add_argument("--processor", default="tiny.en", help="the Whisper whose feature extractor to use")
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    utts = load_spec(a.data)[: a.clips]
    _, processor = load_whisper(a.processor)
    features, positions = clip_features(processor, [load_audio(u) for u in utts])
    labels = [text_to_labels(u.text)[0] for u in utts]
    targets = torch.zeros(len(labels), max(map(len, labels)), dtype=torch.long)
    for i, ids in enumerate(labels):
        targets[i, : len(ids)] = torch.tensor(ids)
    target_lengths = torch.tensor([len(ids) for ids in labels])
    shape = CTCShape(
        n_mels=features.shape[1], d_model=a.d_model, layers=a.layers, heads=a.heads, ffn=a.ffn, dropout=0.0
    )
    model = CTCModel(shape)
    optimiser = torch.optim.AdamW(model.parameters(), lr=a.lr)
    loss_fn, started = CTCLoss(), time.perf_counter()
    print(f"reference: {utts[0].text!r}")
    for step in range(1, a.steps + 1):
        log_probs, _, lengths = model(features, positions)
        loss = loss_fn(log_probs, targets, lengths, target_lengths)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                text = ctc_greedy(model(features, positions)[0], lengths, shape.vocab)[0]
            model.train()
            print(
                f"step {step}: loss {loss.item():.2f}, {time.perf_counter() - started:.0f} s, {text[:80]!r}"
            )


if __name__ == "__main__":
    main()
