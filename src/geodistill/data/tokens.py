"""Whisper token sequences: the decoder prompt ``generate()`` forces, and a transcript's label tokens."""

from __future__ import annotations

from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

from geodistill.errors import DataError

MAX_TARGET_POSITIONS = 448  # Whisper's decoder context (config.max_target_positions)
MAX_PROMPT = 4  # <|startoftranscript|> <|lang|> <|task|> <|notimestamps|>
MAX_LABEL_TOKENS = MAX_TARGET_POSITIONS - MAX_PROMPT + 1  # text + eot; the prompt's last token overlaps


def _tokenizer(tokenizer_or_processor):
    return getattr(tokenizer_or_processor, "tokenizer", tokenizer_or_processor)


def _token_id(tok, token: str) -> int:
    i = tok.convert_tokens_to_ids(token)
    if i is None or i == tok.unk_token_id:
        raise DataError(f"tokenizer has no {token} token: is it a Whisper tokenizer?")
    return int(i)


def _language_token(language: str) -> str:

    lang = language.lower().strip()
    if lang.startswith("<|") and lang.endswith("|>"):
        lang = lang[2:-2]
    code = TO_LANGUAGE_CODE.get(lang, lang)
    if code not in LANGUAGES:
        raise DataError(f"language {language!r} is not a Whisper language (e.g. 'en', 'de', 'english')")
    return f"<|{code}|>"


def prompt_ids(
    tokenizer_or_processor, model_or_generation_config, language: str | None = None, task: str = "transcribe"
) -> list[int]:
    """The decoder prefix ``model.generate(language=..., task=...)`` forces without timestamps.

    English-only models: ``[<|startoftranscript|>, <|notimestamps|>]``; multilingual ones:
    ``[<|startoftranscript|>, <|lang|>, <|task|>, <|notimestamps|>]``. Ids come from the generation config
    (as ``generate`` takes them) with the tokenizer as the fallback. A multilingual model needs ``language``:
    ``generate`` would detect it per clip, which a fixed training prompt cannot do.
    """
    tok = _tokenizer(tokenizer_or_processor)
    gen = getattr(model_or_generation_config, "generation_config", model_or_generation_config)
    sot = getattr(gen, "decoder_start_token_id", None)
    ids = [int(sot) if sot is not None else _token_id(tok, "<|startoftranscript|>")]
    multilingual = getattr(gen, "is_multilingual", None)
    if multilingual is None:
        vocab = getattr(getattr(model_or_generation_config, "config", None), "vocab_size", None)
        multilingual = hasattr(gen, "lang_to_id") or (vocab is not None and vocab >= 51865)
    if multilingual:
        if language is None:
            raise DataError(
                "a multilingual Whisper needs a language for its decoder prompt (e.g. language='en')"
            )
        if task not in ("transcribe", "translate"):
            raise DataError(f"task {task!r}: expected 'transcribe' or 'translate'")
        lang_token = _language_token(language)
        lang_to_id = getattr(gen, "lang_to_id", None) or {}
        task_to_id = getattr(gen, "task_to_id", None) or {}
        ids.append(int(lang_to_id[lang_token]) if lang_token in lang_to_id else _token_id(tok, lang_token))
        ids.append(int(task_to_id[task]) if task in task_to_id else _token_id(tok, f"<|{task}|>"))
    nts = getattr(gen, "no_timestamps_token_id", None)
    ids.append(int(nts) if nts is not None else _token_id(tok, "<|notimestamps|>"))
    return ids


def text_tokens(tokenizer_or_processor, text: str) -> list[int]:
    """Label tokens of a transcript, Whisper style: leading space, case and punctuation kept, then eot.

    Shape: (n_text + 1,). No special tokens other than the final <|endoftext|>.
    """
    tok = _tokenizer(tokenizer_or_processor)
    ids = tok(" " + text.strip(), add_special_tokens=False).input_ids
    return list(ids) + [int(tok.eos_token_id)]
