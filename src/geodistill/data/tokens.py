"""Whisper token sequences: the decoder prompt ``generate()`` forces, and a transcript's label tokens.

A prompt is built per utterance (``Prompts``): its language (the utterance's own, else the run's default),
its task (transcribe | translate) and whether it is trained with timestamps. Languages are Whisper's codes
("de", "yue"); names ("German"), ``<|de|>`` and locales ("pt-BR", "zh_CN") are accepted and turned into
codes by ``language_code``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

from geodistill.errors import DataError

MAX_TARGET_POSITIONS = 448  # Whisper's decoder context (config.max_target_positions)
MAX_PROMPT = 4  # <|startoftranscript|> <|lang|> <|task|> <|notimestamps|>
MAX_LABEL_TOKENS = MAX_TARGET_POSITIONS - MAX_PROMPT + 1  # text + eot; the prompt's last token overlaps
TASKS = ("transcribe", "translate")
TIME_PRECISION = 0.02  # seconds between two timestamp tokens: <|0.00|>, <|0.02|>, ... <|30.00|>
N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>
# Languages written without spaces between words: a "word" there is a whole phrase, so their headline
# error rate is the CER (as the Open ASR leaderboard and Whisper's paper score them).
NO_SPACE_LANGUAGES = frozenset({"zh", "yue", "ja", "th", "lo", "km", "my", "bo"})
_TIMESTAMP = re.compile(r"<\|(\d+(?:\.\d+)?)\|>")


def _tokenizer(tokenizer_or_processor):
    return getattr(tokenizer_or_processor, "tokenizer", tokenizer_or_processor)


def _token_id(tok, token: str) -> int:
    i = tok.convert_tokens_to_ids(token)
    if i is None or i == tok.unk_token_id:
        raise DataError(f"tokenizer has no {token} token: is it a Whisper tokenizer?")
    return int(i)


def language_code(value: str) -> str | None:
    """Whisper's code of ``value`` ("de", "German", "<|de|>", "pt-BR", "zh_CN" -> "de", "de", "de", "pt",
    "zh"), or None when Whisper has no such language."""
    lang = value.lower().strip()
    if lang.startswith("<|") and lang.endswith("|>"):
        lang = lang[2:-2]
    for candidate in (lang, re.split(r"[-_]", lang)[0]):
        code = TO_LANGUAGE_CODE.get(candidate, candidate)
        if code in LANGUAGES:
            return code
    return None


def _language_token(language: str) -> str:
    code = language_code(language)
    if code is None:
        raise DataError(f"language {language!r} is not a Whisper language (e.g. 'en', 'de', 'english')")
    return f"<|{code}|>"


def _is_multilingual(model_or_generation_config) -> bool:
    gen = getattr(model_or_generation_config, "generation_config", model_or_generation_config)
    multilingual = getattr(gen, "is_multilingual", None)
    if multilingual is None:
        vocab = getattr(getattr(model_or_generation_config, "config", None), "vocab_size", None)
        multilingual = hasattr(gen, "lang_to_id") or (vocab is not None and vocab >= 51865)
    return bool(multilingual)


class Prompts:
    """The decoder prompts of one model: ``ids(language, task, timestamps)`` per utterance.

    English-only models: ``[<|startoftranscript|>]``; multilingual ones add ``<|lang|> <|task|>``; without
    timestamps ``<|notimestamps|>`` ends the prompt, as ``model.generate(language=, task=)`` forces it. Ids
    come from the generation config (as ``generate`` takes them), the tokenizer as the fallback.
    ``language`` / ``task``: the defaults for utterances that name none.
    A prompt is a function of (language, task, timestamps): a teacher cache records the defaults and checks
    every cached row's prompt + text against the batch's, so another prompt is never read silently.
    """

    def __init__(
        self,
        tokenizer_or_processor,
        model_or_generation_config,
        language: str | None = None,
        task: str = "transcribe",
        name: str = "the model",
    ):
        self.tok = _tokenizer(tokenizer_or_processor)
        self.name = name  # what an error calls the model (the teacher spec)
        gen = getattr(model_or_generation_config, "generation_config", model_or_generation_config)
        self.gen = gen
        sot = getattr(gen, "decoder_start_token_id", None)
        self.sot = int(sot) if sot is not None else _token_id(self.tok, "<|startoftranscript|>")
        nts = getattr(gen, "no_timestamps_token_id", None)
        self.no_timestamps = int(nts) if nts is not None else _token_id(self.tok, "<|notimestamps|>")
        self.timestamp_begin = self.no_timestamps + 1  # <|0.00|>, as transformers and openai-whisper find it
        self.multilingual = _is_multilingual(model_or_generation_config)
        self.language, self.task = language, task

    def problem(self, language: str | None, task: str | None) -> str | None:
        """Why this model cannot take an utterance in ``language`` with ``task`` (None: it can)."""
        language, task = language or self.language, task or self.task
        if task not in TASKS:
            return f"task {task!r}: expected 'transcribe' or 'translate'"
        if language is not None and language_code(language) is None:
            return f"language {language!r} is not a Whisper language (e.g. 'en', 'de', 'english')"
        if not self.multilingual:
            if language is not None and language_code(language) != "en":
                return f"language {language!r}: {self.name} is English-only (.en); use a multilingual model"
            if task != "transcribe":
                return f"task {task!r}: {self.name} is English-only (.en) and only transcribes"
            return None
        if language is None:
            return (
                "no language: a multilingual Whisper needs a language for its prompt "
                "(data.language, or a language column)"
            )
        return None

    def ids(
        self, language: str | None = None, task: str | None = None, timestamps: bool = False
    ) -> list[int]:
        """The prompt of one utterance; raises DataError naming what the model cannot take."""
        language, task = language or self.language, task or self.task
        problem = self.problem(language, task)
        if problem is not None:
            raise DataError(problem)
        ids = [self.sot]
        if self.multilingual:
            assert language is not None and task is not None  # problem() said so
            lang_token = _language_token(language)
            lang_to_id = getattr(self.gen, "lang_to_id", None) or {}
            task_to_id = getattr(self.gen, "task_to_id", None) or {}
            ids.append(
                int(lang_to_id[lang_token]) if lang_token in lang_to_id else _token_id(self.tok, lang_token)
            )
            ids.append(int(task_to_id[task]) if task in task_to_id else _token_id(self.tok, f"<|{task}|>"))
        if not timestamps:
            ids.append(self.no_timestamps)
        return ids

    def timestamp_id(self, seconds: float) -> int:
        """The token of a time in the window (0.00 .. 30.00 s, a multiple of 0.02 s)."""
        return self.timestamp_begin + round(seconds / TIME_PRECISION)


def prompt_ids(
    tokenizer_or_processor,
    model_or_generation_config,
    language: str | None = None,
    task: str = "transcribe",
    timestamps: bool = False,
) -> list[int]:
    """The decoder prefix ``model.generate(language=..., task=...)`` forces (``Prompts.ids``).

    English-only models: ``[<|startoftranscript|>, <|notimestamps|>]``; multilingual ones:
    ``[<|startoftranscript|>, <|lang|>, <|task|>, <|notimestamps|>]``; ``timestamps`` drops the
    ``<|notimestamps|>``. A multilingual model needs ``language``: ``generate`` would detect it per clip,
    which a fixed training prompt cannot do.
    """
    return Prompts(tokenizer_or_processor, model_or_generation_config).ids(language, task, timestamps)


def text_tokens(tokenizer_or_processor, text: str) -> list[int]:
    """Label tokens of a transcript, Whisper style: leading space, case and punctuation kept, then eot.

    Shape: (n_text + 1,). No special tokens other than the final <|endoftext|>.
    """
    tok = _tokenizer(tokenizer_or_processor)
    ids = tok(" " + text.strip(), add_special_tokens=False).input_ids
    return list(ids) + [int(tok.eos_token_id)]


def timestamped_tokens(tokenizer_or_processor, text: str, timestamp_begin: int) -> list[int]:
    """Label tokens of a timestamped transcript, then eot: ``"<|0.00|> Hello.<|1.20|><|1.20|> Bye<|2.00|>"``
    -> [ts(0.00), " Hello", ".", ts(1.20), ts(1.20), " Bye", ts(2.00), eot], the text between two times
    tokenised as written (Whisper's segments start with their space). ``timestamp_begin``: the id of
    <|0.00|>. Raises DataError when a time is out of the window, not a multiple of 0.02 s, earlier than
    the one before, or the text does not start and end with one."""
    tok = _tokenizer(tokenizer_or_processor)
    parts = _TIMESTAMP.split(text.strip())  # [text, time, text, time, ..., text]
    if len(parts) < 3 or parts[0].strip() or parts[-1].strip():
        raise DataError("timestamped text must start and end with a <|t.tt|> token")
    ids: list[int] = []
    last = 0.0
    for k, part in enumerate(parts):
        if k % 2 == 0:
            if part:
                ids += tok(part, add_special_tokens=False).input_ids
            continue
        seconds = float(part)
        steps = round(seconds / TIME_PRECISION)
        if not 0 <= steps < N_TIMESTAMPS or abs(steps * TIME_PRECISION - seconds) > 1e-6:
            raise DataError(f"timestamp <|{part}|>: not a multiple of 0.02 s in 0.00..30.00")
        if seconds < last:
            raise DataError(f"timestamp <|{part}|> comes after <|{last:.2f}|>: times must not go back")
        last = seconds
        ids.append(timestamp_begin + steps)
    return ids + [int(tok.eos_token_id)]


def timestamped_text(tokenizer_or_processor, ids: Sequence[int], timestamp_begin: int) -> str:
    """The inverse of ``timestamped_tokens``: generated ids (timestamps among the text, special tokens
    dropped) -> ``"<|0.00|> Hello.<|1.20|>..."``."""
    tok = _tokenizer(tokenizer_or_processor)
    eot = int(tok.eos_token_id)
    out, run = [], []
    for i in (int(x) for x in ids):
        if i >= timestamp_begin:
            out.append(tok.decode(run, skip_special_tokens=True))
            out.append(f"<|{(i - timestamp_begin) * TIME_PRECISION:.2f}|>")
            run = []
        elif i < eot:
            run.append(i)
    out.append(tok.decode(run, skip_special_tokens=True))
    return "".join(out).strip()


def plain_text(text: str) -> str:
    """A transcript without its timestamp tokens, single-spaced."""
    return " ".join(_TIMESTAMP.sub(" ", text).split())
