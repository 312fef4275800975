"""The Python API (``from geodistill import transcribe, evaluate, distil, export, load``): the README's
example runs as written, ``import geodistill`` stays light, and the two API names that are also
subpackages work in any import order."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.conftest import write_manifest

ROOT = Path(__file__).resolve().parents[1]


def readme_api_example() -> str:
    """The python code block of the README's "Python API" section, as it stands."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the README's Python API section holds one python block"
    return blocks[0]


def python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys, alsa_wav):
    """On the real tiny.en (geodistill[models]), real speech as speech.wav (generated tones would send
    transcribe's temperature fallback through every temperature) and generated training audio."""
    monkeypatch.chdir(tmp_path)
    train = write_manifest(tmp_path, 6, 0, "tr")  # three speakers: one becomes the validation split
    test = write_manifest(tmp_path, 2, 1, "te")
    train.rename("train.jsonl")
    test.rename("test.jsonl")
    Path("speech.wav").write_bytes(alsa_wav.read_bytes())

    exec(compile(readme_api_example(), "README.md", "exec"), {"__name__": "readme"})

    printed = capsys.readouterr().out.splitlines()
    assert printed[1].startswith("WER ") and ", RTF " in printed[1]
    assert re.fullmatch(r"\['.*', '.*'\]", printed[-1])  # a list of two transcripts, the same file twice
    history = json.loads(Path("runs/api/training_history.json").read_text())
    assert [e["step"] for e in history["train"]][-1] == 2
    assert json.loads(Path("student-hf/config.json").read_text())["decoder_layers"] == 2


def test_import_geodistill_stays_light():
    out = python(
        "import sys, geodistill\n"
        "print(sorted(m for m in ('torch', 'transformers', 'geodistill.api') if m in sys.modules))\n"
        "print(sorted(geodistill.__all__))"
    )
    assert out.splitlines() == [
        "[]",
        "['__version__', 'distil', 'evaluate', 'export', 'load', 'transcribe']",
    ]


@pytest.mark.parametrize("first", ["import geodistill.evaluate.run as run", "pass"])
def test_evaluate_and_export_are_callable_whichever_is_imported_first(first):
    """``geodistill.evaluate`` / ``.export`` are subpackages too; importing one must not hide the API."""
    out = python(
        f"{first}\n"
        "import inspect\n"
        "from geodistill import evaluate, export, transcribe\n"
        "import geodistill.export as export_package\n"
        "from geodistill.evaluate.run import evaluate as run_evaluate\n"
        "print(callable(evaluate), callable(export), export_package is export)\n"
        "print(*(list(inspect.signature(f).parameters)[:3] for f in (evaluate, export)))\n"
        "print(evaluate.run.evaluate is run_evaluate, transcribe.__module__)"
    )
    assert out.splitlines() == [
        "True True True",
        "['model', 'data', 'out'] ['source', 'format', 'out']",
        "True geodistill.api",
    ]


def test_calling_the_api_gives_the_commands_one_line_errors(tmp_path):
    import geodistill
    from geodistill.config import ConfigError
    from geodistill.errors import GeodistillError

    with pytest.raises(ConfigError, match="dynamic-gpu: no such config file or preset"):
        geodistill.distil("dynamic-gpu")
    with pytest.raises(GeodistillError, match="--format: unknown format 'zip'"):
        geodistill.export(tmp_path, "zip", tmp_path / "out")
    with pytest.raises(GeodistillError, match="nowhere.wav"):
        geodistill.transcribe("tiny.en", tmp_path / "nowhere.wav")


def test_transcribe_and_evaluate_with_a_loaded_pair(tmp_path, tiny_processor):
    """The (model, processor) pair ``load`` returns goes back into transcribe and evaluate."""
    from geodistill import evaluate, load, transcribe
    from tests.conftest import make_tiny_whisper

    folder = tmp_path / "model"
    make_tiny_whisper(d_model=32, layers=1).save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    manifest = write_manifest(tmp_path, 2, 0, "c")
    pair = load(folder, device="cpu")
    assert type(pair[0]).__name__ == "WhisperForConditionalGeneration"
    one = transcribe(pair, tmp_path / "c0.wav", fallback=False)  # greedy: the same text each time
    both = transcribe(pair, [tmp_path / "c0.wav", tmp_path / "c1.wav"], fallback=False, batch_size=1)
    assert isinstance(one, str) and isinstance(both, list) and len(both) == 2 and both[0] == one
    scores = evaluate(pair, manifest, out=tmp_path / "eval", max_new_tokens=4)
    assert scores["n_utterances"] == 2 and (tmp_path / "eval" / "eval.json").is_file()
    assert scores["warmup"] is not None  # the command's default: a warm-up batch before timing
