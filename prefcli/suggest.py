"""The one "did you mean" of every error message that names an unknown word."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_matches(word: str, valid: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` words of ``valid`` close to ``word`` (best first)."""
    return difflib.get_close_matches(str(word), [str(v) for v in valid], n=n, cutoff=cutoff)


def did_you_mean(word: str, valid: Iterable[str], n: int = 1, cutoff: float = 0.6, quote: bool = True) -> str:
    """``"did you mean 'x'? "`` (or ``'x' or 'y'`` for ``n > 1``) when a valid word is close, else ``""``: an
    error message puts it in front of the list of valid words."""
    close = close_matches(word, valid, n=n, cutoff=cutoff)
    if not close:
        return ""
    shown = [repr(c) if quote else c for c in close]
    return f"did you mean {' or '.join(shown)}? "
