"""Every embpipe module imports in the installed environment, so a dependency missing from the lock fails here."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import embpipe

MODULES = sorted(m.name for m in pkgutil.walk_packages(embpipe.__path__, prefix="embpipe."))


def test_the_package_has_its_stage_modules():
    assert {"embpipe.definitions", "embpipe.cli", "embpipe.llm.local_server"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
    importlib.import_module(module)
