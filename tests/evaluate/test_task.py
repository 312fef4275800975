"""--task transcribe | translate at inference: the prompt each engine is given, the refusals, and the task
evaluate and pseudo-label record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from transformers import WhisperProcessor

from geodistill.data import Utterance
from geodistill.decoding.engines import Ct2Whisper, check_engine
from geodistill.decoding.longform import Decoding, faster_whisper_transcribe
from geodistill.decoding.options import DecodeOptions
from geodistill.decoding.whisper import features, generate_ids
from geodistill.errors import GeodistillError
from geodistill.evaluate.pseudo import pseudo_label
from geodistill.evaluate.run import evaluate
from tests.conftest import make_tiny_whisper, multilingual_generation_config
from tests.evaluate.clips import write_clips, write_manifest

SOT, TRANSLATE, TRANSCRIBE, NO_TIMESTAMPS = 50258, 50358, 50359, 50363
DE = multilingual_generation_config().lang_to_id["<|de|>"]


@pytest.fixture
def multilingual(base_tokenizer, tiny_processor):
    """A tiny random multilingual Whisper (51,865 tokens, 99 languages), the real multilingual tokenizer."""
    model = make_tiny_whisper(d_model=32, layers=1, vocab=51865, text_ctx=16)
    model.config.decoder_start_token_id = SOT
    model.config.eos_token_id = model.config.pad_token_id = 50257
    model.generation_config = multilingual_generation_config()
    processor = WhisperProcessor(feature_extractor=tiny_processor.feature_extractor, tokenizer=base_tokenizer)
    return model, processor


def prompts_seen(model) -> list[list[int]]:
    """A list that fills with each prompt (first decoder call, more than one token) the model decodes."""
    seen: list[list[int]] = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[-1] > 1:
            seen.extend(ids.tolist())

    model.model.decoder.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def clips(tmp_path, n: int, **fields) -> list[Utterance]:
    rows = write_clips(tmp_path, n)
    return [
        Utterance(f"c{i}", str(tmp_path / r["audio_filepath"]), r["text"], **fields)
        for i, r in enumerate(rows)
    ]


def test_unknown_task_is_one_line():
    with pytest.raises(
        GeodistillError, match=r"^--task: unknown 'summarise' \(choose transcribe or translate\)$"
    ):
        DecodeOptions(task="summarise")


def test_hf_prompt_carries_the_task(multilingual, tiny_processor):
    model, _ = multilingual
    seen = prompts_seen(model)
    feats = features(tiny_processor, [np.zeros(16000, dtype=np.float32)])
    generate_ids(model, feats, language="de", task="translate", max_new_tokens=2)
    generate_ids(model, feats, language="de", max_new_tokens=2)  # None: transcribe, as before
    assert seen == [[SOT, DE, TRANSLATE, NO_TIMESTAMPS], [SOT, DE, TRANSCRIBE, NO_TIMESTAMPS]]


class FakeCt2:
    """ctranslate2.models.Whisper's generate, recording the prompts it is given."""

    is_multilingual = True

    def __init__(self):
        self.prompts: list[list[str]] = []

    def generate(self, feats, prompts, **kwargs):
        self.prompts += prompts
        return [SimpleNamespace(sequences_ids=[[50257]], no_speech_prob=0.0, scores=[0.0]) for _ in prompts]


def fake_ct2(processor, multilingual: bool = True) -> Ct2Whisper:
    engine = object.__new__(Ct2Whisper)  # the CTranslate2 model itself replaced by the recorder
    engine.model, engine.processor = FakeCt2(), processor
    engine.model.is_multilingual = multilingual
    engine.config = SimpleNamespace(max_target_positions=448, vocab_size=51865 if multilingual else 51864)
    engine.generation_config = SimpleNamespace(is_multilingual=multilingual)
    return engine


def test_ct2_prompt_tokens_and_faster_whisper_get_the_task(multilingual, tiny_processor):
    _, processor = multilingual
    engine = fake_ct2(processor)
    feats = features(tiny_processor, [np.zeros(16000, dtype=np.float32)] * 2)
    generate_ids(engine, feats, language="de", task="translate", max_new_tokens=2)
    assert (
        engine.model.prompts == [["<|startoftranscript|>", "<|de|>", "<|translate|>", "<|notimestamps|>"]] * 2
    )
    asked: dict = {}
    engine._faster = SimpleNamespace(transcribe=lambda audio, **kwargs: asked.update(kwargs))
    faster_whisper_transcribe(engine, np.zeros(16000, dtype=np.float32), Decoding("de", task="translate"))
    assert asked["task"] == "translate" and asked["language"] == "de"


def test_evaluate_row_task_wins_and_eval_json_records_it(multilingual, tmp_path):
    model, processor = multilingual
    seen = prompts_seen(model)
    utts = clips(tmp_path, 3, language="de")
    utts[2] = Utterance(utts[2].id, utts[2].audio, utts[2].text, language="de", task="transcribe")
    r = evaluate((model, processor), utts, out=tmp_path / "ev", task="translate", max_new_tokens=2)
    assert r["task"] is None  # rows differ
    rows = [json.loads(x) for x in (tmp_path / "ev" / "utterances.jsonl").read_text().splitlines()]
    assert [row["task"] for row in rows] == ["translate", "translate", "transcribe"]
    assert sorted(p[2] for p in seen) == [TRANSLATE, TRANSLATE, TRANSCRIBE]  # one prompt a clip

    same = evaluate((model, processor), utts[:2], out=tmp_path / "ev2", task="translate", max_new_tokens=2)
    assert json.loads((tmp_path / "ev2" / "eval.json").read_text())["task"] == same["task"] == "translate"
    assert "task translate" in (tmp_path / "ev2" / "eval.md").read_text()


def test_pseudo_label_stores_the_task_of_each_row(multilingual, tmp_path):
    model, processor = multilingual
    rows = write_clips(tmp_path, 3)
    for row in rows:
        row["language"] = "de"
    rows[2]["task"] = "transcribe"  # the row's own task wins over --task
    out = tmp_path / "pseudo.jsonl"
    summary = pseudo_label((model, processor), str(write_manifest(tmp_path, rows)), out, task="translate")
    written = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert summary["n_in"] == 3 and len(written) == summary["n_written"] == 3
    tasks = {"clip0": "translate", "clip1": "translate", "clip2": "transcribe"}
    assert {k: r["task"] for k, r in written.items()} == tasks
    with pytest.raises(GeodistillError, match=r"^--task: unknown 'gloss'"):
        pseudo_label((model, processor), str(tmp_path / "manifest.jsonl"), out, task="gloss")


def test_translate_is_refused_for_an_english_only_model(tiny_whisper, tiny_processor, tmp_path):
    with pytest.raises(GeodistillError, match=r"^--task translate: the model is English-only") as info:
        evaluate((tiny_whisper, tiny_processor), clips(tmp_path, 1), task="translate", max_new_tokens=2)
    assert "\n" not in str(info.value)
    feats = features(tiny_processor, [np.zeros(16000, dtype=np.float32)])
    with pytest.raises(GeodistillError, match=r"^--task translate: .*English-only"):
        evaluate(
            (fake_ct2(tiny_processor, multilingual=False), tiny_processor),
            clips(tmp_path, 1),
            task="translate",
        )
    assert generate_ids(tiny_whisper, feats, task="transcribe", max_new_tokens=2).shape[0] == 1


def test_translate_is_refused_by_whispercpp_and_ctc_students(random_ctc_dir, tmp_path):
    with pytest.raises(GeodistillError, match=r"^--task translate: --engine whispercpp"):
        check_engine(DecodeOptions(engine="whispercpp", task="translate"))
    utts = clips(tmp_path, 1)
    with pytest.raises(GeodistillError, match=r"^--task translate: a CTC student only transcribes"):
        evaluate(str(random_ctc_dir), utts, task="translate")
    row = [Utterance(utts[0].id, utts[0].audio, utts[0].text, task="translate")]  # a row's own task too
    with pytest.raises(GeodistillError, match=r"^--task translate: a CTC student"):
        evaluate(str(random_ctc_dir), row)
    assert evaluate(str(random_ctc_dir), utts, task="transcribe")["task"] == "transcribe"


def test_the_task_flag_reaches_the_model(tiny_model_dir, tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    proc = subprocess.run(
        [sys.executable, "-m", "geodistill.cli", "transcribe", str(tiny_model_dir), str(tmp_path / "a.wav")]
        + ["--task", "translate", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = proc.stderr.strip().splitlines()[-1]  # after transformers' loading bar
    assert proc.returncode == 2 and last.startswith("error: --task translate:") and "English-only" in last
    assert "Traceback" not in proc.stderr


ASTERISK_FR = Path("/usr/share/asterisk/sounds/fr")  # asterisk-core-sounds-fr-g722 (CC-BY-SA 3.0)


@pytest.mark.integration
def test_real_base_translates_french_speech(tmp_path):
    import soundfile as sf

    pytest.importorskip("av", reason="PyAV decodes Asterisk's G.722 prompts")
    from geodistill.corpus.multilingual import read_g722
    from geodistill.evaluate.transcribe import transcribe_files

    if not (ASTERISK_FR / "demo-thanks.g722").is_file():
        pytest.skip("asterisk-core-sounds-fr-g722 not installed")
    paths = []
    for name in (
        "demo-thanks",
        "all-circuits-busy-now",
    ):  # "Au revoir. Merci d'avoir essayé ...", "toutes les lignes ..."
        paths.append(tmp_path / f"{name}.wav")
        sf.write(paths[-1], read_g722(ASTERISK_FR / f"{name}.g722"), 16000)
    try:
        said = transcribe_files("base", paths, device="cpu", language="fr")
    except GeodistillError as exc:  # the embedded models come with the `models` extra
        pytest.skip(str(exc))
    english = transcribe_files("base", paths, device="cpu", language="fr", task="translate")
    assert "merci" in said[0].lower() and "lignes" in said[1].lower()
    assert "thank you" in english[0].lower() and english[1].lower().startswith("all the")
