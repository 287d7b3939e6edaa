"""Telling a Hugging Face hub id from a local path, the same way for data sets, models and evaluation sets."""

from __future__ import annotations

import re

_NAME = r"[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"^{_NAME}/{_NAME}$", re.ASCII)
_BARE_NAME = re.compile(rf"^{_NAME}$", re.ASCII)
_FILE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".gz", ".parquet", ".pq", ".csv", ".tsv", ".txt", ".yaml", ".yml")


def looks_like_hub_id(text: str, *, bare_name: bool = False) -> bool:
    """Whether ``text`` (which is not an existing path: check that first) can only mean a hub repository.

    A hub id is ``namespace/name`` (``bare_name`` also accepts a plain ``name``, as models like ``gpt2`` have),
    each part made of letters, digits, ``_``, ``.`` and ``-`` as the hub allows (starting with a letter or digit,
    no ``--`` or ``..``). A path starting with ``.``, ``/`` or ``~``, with more than one ``/``, or ending in a data
    file extension (``.jsonl``, ``.parquet``…) is a local path that does not exist, not a hub id.
    """
    if "--" in text or ".." in text or text.lower().endswith(_FILE_SUFFIXES):
        return False
    return bool(_REPO_ID.match(text) or (bare_name and _BARE_NAME.match(text)))
