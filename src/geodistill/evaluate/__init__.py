"""Evaluation and transcription by any model's student family: WER/CER on raw and normalised text,
real-time factor, peak memory, eval.json; ``transcribe``'s output formats (``outputs``: txt, json, srt, vtt,
tsv); ``pseudo`` writes a teacher's transcripts as a manifest."""

from geodistill.decoding.speed import count_params, model_disk_mb, real_time_factor
from geodistill.decoding.wer import normalise, wer_scores
from geodistill.decoding.whisper import transcribe_batch
from geodistill.evaluate.run import evaluate
from geodistill.evaluate.transcribe import iter_transcripts, load_model, transcribe_files

__all__ = [
    "count_params",
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
