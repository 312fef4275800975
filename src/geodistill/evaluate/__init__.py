"""Evaluation: WER/CER on raw and normalised text, real-time factor, peak memory, batched transcription."""

from geodistill.evaluate.run import decode, evaluate
from geodistill.evaluate.speed import count_params, model_disk_mb, real_time_factor
from geodistill.evaluate.transcribe import iter_transcripts, load_model, transcribe_batch, transcribe_files
from geodistill.evaluate.wer import normalise, wer_scores

__all__ = [
    "count_params",
    "decode",
    "evaluate",
    "iter_transcripts",
    "load_model",
    "model_disk_mb",
    "normalise",
    "real_time_factor",
    "transcribe_batch",
    "transcribe_files",
    "wer_scores",
]
