"""Teacher-output cache: run the frozen teacher once over a data set, then train and tune many times.

What is cacheable, and why. The teacher is frozen, in eval mode (no dropout) and teacher-forced on the
ground-truth label tokens, so everything it gives the loop is a pure function of (teacher weights,
audio, label ids) and constant per utterance for the whole run and for every tuning trial:

- decoder logits, stored as the top-k log-probabilities + their ids + the full-vocabulary logsumexp at
  T = 1 and at each KL temperature asked for (the top-k KL of ``geodistill.losses.kd`` at T is the exact
  k + 1 bucket KL only with the logsumexp taken at T; from T = 1 alone the loss must extrapolate the
  tail), optionally the full-vocabulary log-probabilities (the KL is then the full one);
- the last decoder layer's states (the decoder hidden loss);
- the last encoder layer's states (B, 1500, D_t): the encoder hidden loss, and, when the student's
  encoder is an untouched frozen full copy of the teacher's (``Run.shares_encoder``), the student's own
  encoder output as well, so a cached run does no encoder forward at all, teacher's or student's;
- optionally (``cross_kv_layers``) the cross-attention keys and values of chosen decoder layers: the
  ``encoder_attn.k_proj`` / ``v_proj`` projections of the encoder states, 2 x D^2 x 1500 x 2 FLOPs per
  layer and utterance. A copy student that keeps those layers with the two projections frozen (LoRA only
  on text-side linears, preset ``decoder-text-side``) and shares the encoder has the very same keys and
  values, so it reads them instead of projecting 1500 frames per layer every step
  (``students.sharing.cross_kv_plan`` decides, ``shared_cross_kv`` checks the weights). With LoRA on a
  cross-attention k or v they train, and are not constants.

Not cacheable at all: anything downstream of a trainable weight, and any audio augmentation (a cache of
augmented audio would freeze one draw of the noise).

Layout (one folder)::

    index.json                settings, teacher + data fingerprints, utterance ids, status
    processor/                the teacher's processor (tokenizer check without loading the teacher)
    shard-00000.safetensors   shard_size utterances, tensors concatenated over their tokens:
        decoder_input_ids (N_tok,) int32   the teacher-forced input, prompt + text (verified on read)
        topk_logprobs (N_tok, k)           log p of the k most likely tokens, storage dtype
        topk_indices (N_tok, k)            their ids, uint16 (Whisper's vocabulary < 65536) else int32
        logsumexp (N_tok,) float32         logsumexp of the full raw logits at T = 1
        logsumexp_t2 (N_tok,) float32      logsumexp(z / 2), one per extra temperature (default T = 2)
        logprobs (N_tok, V)                full log-softmax (full_logits=True only)
        decoder_hidden (N_tok, D_t)        last decoder states, after the final layer norm
        encoder_hidden (N_utt, T, D_t)     last encoder states (T = 1500, or 1500 / encoder_pool)
        cross_k.j, cross_v.j (N_utt, H, 1500, D_t / H)   teacher layer j's cross-attention keys / values
    bad_samples.jsonl         utterances the data layer could not use (not in any shard)

Why safetensors shards rather than .npy memmaps: one self-describing file per shard (dtypes, shapes and
the shard's utterance ids in its header), no pickle, written to a temporary name and renamed, so a shard
that exists is complete; ``safe_open`` memory-maps it and a slice reads only its own pages. Log-probs are
stored instead of raw logits because fp16 is precise near 0, where the probable tokens are (log p = -0.01
keeps 1e-5), whereas a raw logit of 20 keeps only 0.016; the logsumexp is kept in fp32 and added back.
"""

from geodistill.teacher.cache.build import BuildOptions, build_cache, teacher_rows
from geodistill.teacher.cache.fingerprint import (
    data_fingerprint,
    data_spec_name,
    spec_name,
    teacher_fingerprint,
)
from geodistill.teacher.cache.format import (
    CONTENT_KEYS,
    FORMAT,
    INDEX,
    STORAGE_DTYPES,
    CacheOptions,
    check_expectations,
    check_fields,
    cross_kv_names,
    is_complete,
    lse_name,
    read_index,
    shard_done,
    shard_name,
    write_shard,
)
from geodistill.teacher.cache.read import CachedTeacher

__all__ = [
    "CONTENT_KEYS",
    "FORMAT",
    "INDEX",
    "STORAGE_DTYPES",
    "BuildOptions",
    "CacheOptions",
    "CachedTeacher",
    "build_cache",
    "check_expectations",
    "check_fields",
    "cross_kv_names",
    "data_fingerprint",
    "data_spec_name",
    "is_complete",
    "lse_name",
    "read_index",
    "shard_done",
    "shard_name",
    "spec_name",
    "teacher_fingerprint",
    "teacher_rows",
    "write_shard",
]
