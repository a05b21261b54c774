"""Learners, one file each: every module here is imported, and each registers itself under its
file name (the registry key and the CLI name). Adding a learner is adding a file."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
