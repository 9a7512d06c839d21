"""Plug-ins from outside the package: modules of yours that register tasks (``register_task``), student formats
(``register_format`` / ``make_format(..., register=True)``), answer types (``@register_answer_type``) or teacher
backends (``@register_teacher``). ``ftcot`` imports them when it starts, so every command finds them by name:

- a module on ``PYTHONPATH`` (no package needed): ``FTCOT_PLUGINS=my_tasks,my_formats ftcot run --tasks mine ...``;
- an installed package: the entry point group ``ftcot_hf.plugins``
  (``[project.entry-points."ftcot_hf.plugins"] mine = "mypkg.ftcot_plugin"``).

A teacher backend alone needs neither: ``--teacher mypkg.mod:MyTeacher`` imports it, and the ``ftcot_hf.teachers``
entry point group names one. In Python, importing your module before calling ftcot_hf is all it takes.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from ftcot_hf.errors import FtcotError

ENTRY_POINT_GROUP = "ftcot_hf.plugins"
"""Installed packages name their plug-in modules here."""

PLUGINS_ENV = "FTCOT_PLUGINS"
"""Modules to import, comma-separated (``FTCOT_PLUGINS=my_tasks,my_formats``)."""


def load_plugins() -> list[str]:
    """Import every plug-in: the entry point group's, then ``$FTCOT_PLUGINS``'s; returns what was loaded. A module
    already imported is not run again (its registrations stand). One that cannot be imported is an FtcotError naming
    it and where it was declared."""
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _load(ep.value, f"the {ENTRY_POINT_GROUP} entry point {ep.name!r}", ep.load)
        loaded.append(ep.value)
    for name in (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",")):
        if name:
            _load(name, f"${PLUGINS_ENV}", lambda name=name: importlib.import_module(name))
            loaded.append(name)
    return loaded


def _load(name: str, where: str, load: Callable[[], object]) -> None:
    try:
        load()
    except ImportError as e:  # a typo or a missing dependency of the plug-in: one line, not a traceback
        raise FtcotError(f"Plug-in {name!r} (from {where}) cannot be imported: {e}. It must be importable here (on "
                         "PYTHONPATH, or installed).") from None  # fmt: skip
