"""Number formatting for reports and cards."""

from __future__ import annotations


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals and no sign (``0.1234`` -> ``"12.34"``); ``None`` -> ``"-"``.

    Example::

        >>> pct(0.5), pct(None)
        ('50.00', '-')
    """
    return "-" if value is None else f"{100 * value:.2f}"
