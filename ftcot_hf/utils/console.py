"""A quiet console inside our stages: the libraries' own progress bars and info logs off, ours on.

One of our stages (an evaluation, building a task's splits, teaching) calls many library functions that each draw
a progress bar: ``datasets`` ("Generating train split", "Map"), ``transformers`` ("Loading weights"),
``huggingface_hub`` ("Fetching N files"). A run then prints a dozen bars, some of them nested (cursor-up escapes
``\\x1b[A`` in a log file), while the stage shows one bar of its own with rows as the unit.
:func:`quiet_libraries` turns those libraries' bars off for the duration of a stage and raises their log
verbosity to at least WARNING, then restores exactly what was there before (it nests).

A library whose user pinned its behaviour by environment (``HF_DATASETS_DISABLE_PROGRESS_BARS``,
``DATASETS_VERBOSITY``, ``TRANSFORMERS_VERBOSITY``, ``HF_HUB_DISABLE_PROGRESS_BARS``) is left alone, as the
libraries themselves give the environment priority. ``FTCOT_LIBRARY_PROGRESS=1`` keeps everything as it is (to see
a slow download's bar, say).

Example::

    from ftcot_hf.utils.console import quiet_libraries

    with quiet_libraries():
        ds = load_task("coin_flip")          # no "Generating train split" bars
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

KEEP_ENV = "FTCOT_LIBRARY_PROGRESS"


def _env_set(name: str) -> bool:
    return os.environ.get(name) not in (None, "")


def _quiet_datasets(level: int, undo: list[Callable[[], None]]) -> None:
    try:  # the modules (datasets.utils exports a class named tqdm too)
        ds_logging = importlib.import_module("datasets.utils.logging")
        ds_tqdm = importlib.import_module("datasets.utils.tqdm")
    except ImportError:  # datasets is a dependency; a broken install is not this function's to report
        return
    if not _env_set("HF_DATASETS_DISABLE_PROGRESS_BARS") and not ds_tqdm.are_progress_bars_disabled():
        ds_tqdm.disable_progress_bars()
        undo.append(ds_tqdm.enable_progress_bars)
    if not _env_set("DATASETS_VERBOSITY"):
        before = ds_logging.get_verbosity()
        if before < level:
            ds_logging.set_verbosity(level)
            undo.append(lambda: ds_logging.set_verbosity(before))


def _quiet_transformers(level: int, undo: list[Callable[[], None]]) -> None:
    try:
        from transformers.utils import logging as tf_logging
    except ImportError:
        return
    if tf_logging.is_progress_bar_enabled():
        # transformers' switch also flips huggingface_hub's global one: the hub state is saved and restored
        # separately (see _quiet_hub, which runs first and is undone last).
        with warnings.catch_warnings():  # the hub's env var may forbid its part; transformers' part still goes off
            warnings.simplefilter("ignore")
            tf_logging.disable_progress_bar()

        def enable() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tf_logging.enable_progress_bar()

        undo.append(enable)
    if not _env_set("TRANSFORMERS_VERBOSITY"):
        before = tf_logging.get_verbosity()
        if before < level:
            tf_logging.set_verbosity(level)
            undo.append(lambda: tf_logging.set_verbosity(before))


def _quiet_hub(undo: list[Callable[[], None]]) -> None:
    try:
        hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
    except ImportError:
        return
    states = getattr(hub_tqdm, "progress_bar_states", None)
    if _env_set("HF_HUB_DISABLE_PROGRESS_BARS") or not isinstance(states, dict):
        return
    saved = dict(states)

    def restore() -> None:  # per-group states (e.g. "huggingface_hub.http_get") come back as they were
        states.clear()
        states.update(saved)

    undo.append(restore)
    hub_tqdm.disable_progress_bars()


@contextlib.contextmanager
def quiet_libraries(level: int = logging.WARNING) -> Iterator[None]:
    """Inside the block, ``datasets``', ``transformers``' and ``huggingface_hub``'s progress bars are off and
    ``datasets``/``transformers`` log at ``level`` or above (default WARNING: their warnings still show); on exit
    (an exception included) every setting is restored. Importing ``datasets`` and ``transformers.utils.logging``
    here costs about a second each the first time; both stages that use this import them anyway."""
    if os.environ.get(KEEP_ENV, "") not in ("", "0"):
        yield
        return
    undo: list[Callable[[], None]] = []
    try:
        _quiet_hub(undo)  # first: transformers' switch touches the hub's state, whose undo must run last
        _quiet_datasets(level, undo)
        _quiet_transformers(level, undo)
        yield
    finally:
        for step in reversed(undo):
            try:
                step()
            except Exception:  # noqa: BLE001 -- restoring a library's console setting must never mask the error
                logger.debug("could not restore a library console setting", exc_info=True)


def progress_bar(total: int, desc: str, unit: str = "row", *, enabled: bool = True) -> Any:
    """Our one bar for a stage: ``total`` units (rows), an ETA from the average rate since the start
    (``smoothing=0``: rows finish in bursts at the end of each batch, and tqdm's default moving average turns
    the first burst into hours), redrawn at most twice a second, left on screen when done. None when disabled."""
    if not enabled or total <= 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, smoothing=0, mininterval=0.5, leave=True, dynamic_ncols=True)
