"""The GraphQL documents the provider sends to ION, and the SDL of ION's webhook schema.

Each operation lives once, in ``<OperationName>.graphql`` beside this file. Shared selection sets live
in ``fragments.graphql``; :func:`document` appends to an operation exactly the fragments it uses
(GraphQL rejects unused fragments), so callers always get a complete, valid document.

Fields no public ION page shows carry ``@optional`` (a marker of ours, never sent): see
:func:`published_document` for the text without it, and :mod:`airflow_provider_ion.hooks.schema` for
how the hook adapts a document to the live schema.

This module is pure text handling: it imports neither gql nor graphql-core, so DAG files that import
our operators stay cheap to parse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "GRAPHQL_DIR",
    "OPTIONAL_DIRECTIVE",
    "document",
    "document_names",
    "published_document",
    "schema_sdl",
    "total_count",
]

OPTIONAL_DIRECTIVE = "optional"
"Name of the marker directive on fields that no public ION page shows."

GRAPHQL_DIR = Path(__file__).parent
_SCHEMA_FILE = "schema.graphql"
_FRAGMENTS_FILE = "fragments.graphql"
_SPREAD = re.compile(r"\.\.\.\s*([_A-Za-z][_0-9A-Za-z]*)")
_OPTIONAL = re.compile(r"\s*@optional\b")
_FRAGMENT_HEAD = re.compile(r"^fragment\s+([_A-Za-z][_0-9A-Za-z]*)\s+on\s", re.MULTILINE)


def schema_sdl() -> str:
    """The SDL of ION's webhook schema (what the emulator serves and documents are validated against)."""
    return _read(_SCHEMA_FILE)


def document_names() -> list[str]:
    """Names of every operation document in this folder."""
    skip = {_SCHEMA_FILE, _FRAGMENTS_FILE}
    return sorted(p.stem for p in GRAPHQL_DIR.glob("*.graphql") if p.name not in skip)


@cache
def document(name: str) -> str:
    """The complete text of operation ``name``, with the fragments it uses appended.

    :raises KeyError: no ``<name>.graphql`` exists; the message lists the names that do.
    """
    path = GRAPHQL_DIR / f"{name}.graphql"
    if not path.is_file():
        raise KeyError(f"No GraphQL document named {name!r}; known documents: {', '.join(document_names())}")
    text = path.read_text(encoding="utf-8")
    fragments = _fragments()
    needed: list[str] = []
    pending = _SPREAD.findall(text)
    while pending:
        fragment = pending.pop()
        if fragment in needed or fragment not in fragments:
            continue
        needed.append(fragment)
        pending.extend(_SPREAD.findall(fragments[fragment]))
    return "\n".join([text.rstrip(), *(fragments[f].rstrip() for f in sorted(needed))]) + "\n"


@cache
def published_document(name: str) -> str:
    """:func:`document` without the ``@optional`` markers: what is sent when the live schema is unknown."""
    return _OPTIONAL.sub("", document(name))


def total_count(connection: Mapping[str, Any] | None) -> int | None:
    """A Relay connection's ``totalCount``: inside ``pageInfo`` (ION's pagination guide), else on the
    connection itself (an older schema); None when neither carries it."""
    if not connection:
        return None
    info = connection.get("pageInfo") or {}
    value = info.get("totalCount") if isinstance(info, Mapping) else None
    if value is None:
        value = connection.get("totalCount")
    return int(value) if value is not None else None


@cache
def _fragments() -> dict[str, str]:
    """Fragment name -> its definition text, split out of fragments.graphql."""
    text = _read(_FRAGMENTS_FILE)
    heads = list(_FRAGMENT_HEAD.finditer(text))
    out: dict[str, str] = {}
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out[head.group(1)] = text[head.start() : end].strip()
    return out


@cache
def _read(filename: str) -> str:
    return (GRAPHQL_DIR / filename).read_text(encoding="utf-8")
