"""Optional dependencies: a missing or broken extra is a one-line error naming the pip command."""

from __future__ import annotations

import json
import sys

import pytest

from geodistill.data import load_spec
from geodistill.errors import GeodistillError
from geodistill.optional import MissingDependencyError, require


def test_require_returns_the_module():
    assert require("json", "none", "parsing") is json


def test_missing_module_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail like an absent package
    with pytest.raises(
        MissingDependencyError, match=r"^x needs the 'datasets' package: pip install 'geodistill\[hf\]'$"
    ):
        require("datasets", "hf", "x")


def test_pip_name_can_differ_from_the_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(
        MissingDependencyError, match=r"needs the 'pyyaml' package: pip install 'geodistill\[y\]'"
    ):
        require("yaml", "y", "config files", package="pyyaml")


def test_broken_install_is_not_reported_as_missing(tmp_path, monkeypatch):
    pkg = tmp_path / "gd_broken_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import gd_no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        MissingDependencyError, match=r"'gd_broken_pkg' is installed but does not import .*reinstall"
    ):
        require("gd_broken_pkg", "extra", "feature")
    assert issubclass(MissingDependencyError, GeodistillError)  # the CLI prints it as one line


def test_hf_spec_without_datasets_says_which_extra(tmp_path, monkeypatch):
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}")
    (folder / "state.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(
        MissingDependencyError, match=r"reading a saved datasets dataset needs .*geodistill\[hf\]"
    ):
        load_spec(f"hf:{folder}")
