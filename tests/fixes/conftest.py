"""Fixtures for the `netdoctor fix` tests: one capture of this host per session, a fresh root per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixes.util import capture_tree, make_root


@pytest.fixture(scope="session")
def captured_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return capture_tree(tmp_path_factory.mktemp("capture") / "cap")


@pytest.fixture
def root(captured_tree: Path, tmp_path: Path) -> Path:
    """A fixture root with known values (see util.START), private to the test."""
    return make_root(captured_tree, tmp_path / "root")


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Journal and lock outside the root (NETDOCTOR_STATE_DIR), so the root's hash is the fix's alone."""
    path = tmp_path / "state"
    monkeypatch.setenv("NETDOCTOR_STATE_DIR", str(path))
    return path
