"""What several stages share, below them all: atomic folders and HF locations (:mod:`ftcot_hf.utils.fs`), number
formatting (:mod:`ftcot_hf.utils.fmt`), the flags and YAML of every command (``parser.py``), the one scrubber of
secrets (``scrub.py``), Arrow shards (``shards.py``), the Parquet + README writer of every published dataset
(``export.py``) and what every card shares (``card.py``). Importing this package loads only the first two, which
are light."""

from ftcot_hf.utils.fmt import pct
from ftcot_hf.utils.fs import atomic_dir, hf_home, remove_stale_tmp

__all__ = ["atomic_dir", "hf_home", "pct", "remove_stale_tmp"]
