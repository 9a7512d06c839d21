"""Small helpers shared across ftcot_hf, with no heavy imports: atomic folders and HF locations
(:mod:`ftcot_hf.utils.fs`), number formatting (:mod:`ftcot_hf.utils.fmt`)."""

from ftcot_hf.utils.fmt import pct
from ftcot_hf.utils.fs import atomic_dir, hf_home, remove_stale_tmp

__all__ = ["atomic_dir", "hf_home", "pct", "remove_stale_tmp"]
