"""Learners, one file each: every module here is imported, and each registers itself under its
file name (the registry key and the CLI name). Adding a learner is adding a file. A file that
cannot be imported is one warning line naming it and its error; every other learner still works.
"""

import importlib
import pkgutil
import sys

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        try:
            importlib.import_module(f"{__name__}.{_module.name}")
        except Exception as _e:  # a user's broken file must not break every command
            _where = f"line {_e.lineno}: " if isinstance(_e, SyntaxError) and _e.lineno else ""
            print(f"warning: methods/{_module.name}.py is skipped: {_where}{type(_e).__name__}: {_e}",
                  file=sys.stderr)  # fmt: skip
