"""One workspace for the real-model tests: every cell runs once, later tests reuse its files."""

from __future__ import annotations

import pytest

from tests.realmodels.matrix import Workspace


@pytest.fixture(scope="package")
def workspace(published_models, tmp_path_factory):
    """Scratch folder for the matrix; sweep caches go there, never to the user's cache."""
    scratch = tmp_path_factory.mktemp("realmodels")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPRESSOR_GUI_CACHE_DIR", str(scratch / "cache"))
        yield Workspace(published_models, scratch)
