"""ION's live GraphQL schema, learned once per connection and process, and the documents adapted to it.

The documents in ``airflow_provider_ion/graphql`` select what ION's public pages show; fields nobody
published carry ``@optional``. Before the hook sends one of them it asks this module to
:func:`prepare` it:

* the live schema is fetched by introspection once per (connection, GraphQL URL) and process and
  cached for :data:`SCHEMA_TTL` seconds; a server that refuses introspection is remembered as such
  (logged once) and gets the published documents as they are (:func:`~airflow_provider_ion.graphql.published_document`);
* fragments are inlined; an ``@optional`` field the schema lacks is dropped; a field without it that is
  missing raises :class:`~airflow_provider_ion.exceptions.IonSchemaError` naming the document, the type,
  the field and the closest names the schema has (``difflib``);
* known variants are adapted: ``totalCount`` in ``pageInfo`` or on the connection; a subfield selection
  on a field the schema has as a scalar is dropped; variable types follow the arguments they feed
  (``ID`` vs ``Int``, filter input names); an argument the schema lacks is dropped when its variable is
  null; values are coerced (digit strings to integers where the schema says ``Int``, and for ``ID``:
  ION's published inputs send integers); enum values are resolved singular/plural (``RUN``/``RUNS``);
* headers: when the receiver inputs have no ``headers`` but the schema has ``addHeaderToWebhookReceiver``
  (ION's permission list names it), :func:`split_headers` takes them out of the input and
  :func:`apply_headers` sets them with the header mutations afterwards.

Imports graphql-core at top level; the hook imports this module lazily.

Why one module of ~600 lines: learning the schema and adapting a document to it share one cache and
one set of rules (the variants above); ``doctor.py`` reports with the same functions.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    NameNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableDefinitionNode,
    VariableNode,
    build_client_schema,
    get_introspection_query,
    get_named_type,
    is_leaf_type,
    parse,
    parse_type,
)

from airflow_provider_ion import graphql as documents
from airflow_provider_ion.exceptions import IonAuthError, IonGraphQLError, IonSchemaError
from airflow_provider_ion.resources import resolve_resource

if TYPE_CHECKING:
    from airflow_provider_ion.hooks._gql import Operation
    from airflow_provider_ion.hooks.ion import IonHook

__all__ = [
    "SCHEMA_TTL",
    "LiveSchema",
    "Prepared",
    "adapt",
    "apply_headers",
    "clear_schema_cache",
    "closest",
    "coerce_loose",
    "live_schema",
    "pin_schema",
    "prepare",
    "resolve_enum_value",
    "split_headers",
]

_log = logging.getLogger(__name__)

SCHEMA_TTL = 3600.0
"Seconds a learned schema (or 'introspection disabled') is reused before it is fetched again."

_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")
_ID_KEYS = {"id", "receiverId", "subscriptionId", "headerId", "eventId"}
_INTROSPECTION = get_introspection_query(descriptions=False)
_HEADER_MUTATIONS = ("addHeaderToWebhookReceiver", "removeHeaderFromWebhookReceiver")


def closest(name: str, candidates: Sequence[str], n: int = 3) -> list[str]:
    """The names in ``candidates`` most like ``name`` (difflib, cutoff 0.5)."""
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


def resolve_enum_value(value: str, allowed: Sequence[str]) -> str | None:
    """``value`` as the live enum spells it (exact, any case, singular or plural), or None."""
    if not isinstance(value, str):
        return None
    try:
        return resolve_resource(value, allowed)
    except ValueError:
        return None


# --- adapted documents ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A document ready to send: the operation, and how to shape its variables."""

    op: Operation
    var_types: Mapping[str, GraphQLInputType] = field(default_factory=dict)
    dropped_vars: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()


class _Adapter:
    def __init__(self, schema: GraphQLSchema, name: str) -> None:
        self.schema = schema
        self.name = name
        self.notes: list[str] = []
        self.var_types: dict[str, GraphQLInputType] = {}
        self.dropped_vars: set[str] = set()
        self.fragments: dict[str, FragmentDefinitionNode] = {}

    def missing(self, type_name: str, field_name: str, candidates: Sequence[str], **kw: Any) -> IonSchemaError:
        return IonSchemaError(self.name, type_name, field_name, closest(field_name, candidates), **kw)

    def selection(self, selection_set: SelectionSetNode, parent: Any) -> SelectionSetNode | None:
        fields = getattr(parent, "fields", None) or {}
        flat: list[FieldNode] = []
        self._flatten(selection_set, flat)
        flat = self._move_total_count(flat, parent)
        out: list[FieldNode] = []
        for node in flat:
            adapted = self.field(node, parent, fields)
            if adapted is not None:
                out.append(adapted)
        return SelectionSetNode(selections=tuple(out)) if out else None

    def _flatten(self, selection_set: SelectionSetNode, out: list[FieldNode]) -> None:
        for sel in selection_set.selections:
            if isinstance(sel, FragmentSpreadNode):
                self._flatten(self.fragments[sel.name.value].selection_set, out)
            elif isinstance(sel, InlineFragmentNode):
                self._flatten(sel.selection_set, out)
            else:
                out.append(sel)  # type: ignore[arg-type]

    def _move_total_count(self, flat: list[FieldNode], parent: Any) -> list[FieldNode]:
        """``pageInfo { totalCount }`` where PageInfo has none but the connection has: move it up."""
        fields = getattr(parent, "fields", None) or {}
        info_def = fields.get("pageInfo")
        if info_def is None or "totalCount" not in fields:
            return flat
        info_type = get_named_type(info_def.type)
        if "totalCount" in (getattr(info_type, "fields", None) or {}):
            return flat
        out: list[FieldNode] = []
        moved = False
        for node in flat:
            if node.name.value == "pageInfo" and node.selection_set is not None:
                inner = list(node.selection_set.selections)
                inner = [s for s in inner if not (isinstance(s, FieldNode) and s.name.value == "totalCount")]
                if len(inner) != len(node.selection_set.selections):
                    moved = True
                    node = FieldNode(
                        alias=node.alias, name=node.name, arguments=node.arguments, directives=node.directives,
                        selection_set=SelectionSetNode(selections=tuple(inner)) if inner else None,
                    )  # fmt: skip
                    if not inner:
                        continue
            out.append(node)
        if moved:
            self.notes.append(f"{parent.name}: totalCount read from the connection (not in pageInfo here)")
            out.append(FieldNode(name=NameNode(value="totalCount"), arguments=(), directives=()))
        return out

    def field(self, node: FieldNode, parent: Any, fields: Mapping[str, Any]) -> FieldNode | None:
        name = node.name.value
        directives = tuple(d for d in node.directives or () if d.name.value != documents.OPTIONAL_DIRECTIVE)
        optional = len(directives) != len(node.directives or ())
        if name.startswith("__"):
            return FieldNode(
                alias=node.alias, name=node.name, arguments=node.arguments, directives=directives,
                selection_set=node.selection_set,
            )  # fmt: skip
        definition = fields.get(name)
        if definition is None:
            if optional:
                self.notes.append(f"{parent.name}.{name} is not in this schema: not selected")
                self._drop_vars(node)
                return None
            raise self.missing(parent.name, name, list(fields))
        arguments = []
        for arg in node.arguments or ():
            arg_def = definition.args.get(arg.name.value)
            if arg_def is None:
                self.notes.append(f"{parent.name}.{name}({arg.name.value}:) is not in this schema: not sent")
                self._drop_value(arg.value)
                continue
            if isinstance(arg.value, VariableNode):
                self.var_types[arg.value.name.value] = arg_def.type
            arguments.append(arg)
        named = get_named_type(definition.type)
        selection = node.selection_set
        if selection is not None and is_leaf_type(named):
            self.notes.append(f"{parent.name}.{name} is a {named.name} here: selected without subfields")
            selection = None
        elif selection is not None:
            selection = self.selection(selection, named)
            if selection is None:
                if optional:
                    self.notes.append(f"{parent.name}.{name}: none of its subfields exist here: not selected")
                    return None
                raise self.missing(named.name, "(any selected field)", list(getattr(named, "fields", {}) or {}))
        elif not is_leaf_type(named):
            if optional:
                self.notes.append(f"{parent.name}.{name} is an object type here: not selected")
                return None
            raise IonSchemaError(
                self.name, parent.name, name, (), what="scalar field",
                hint=f"It is the object type {named.name} there; the document must select its subfields.",
            )  # fmt: skip
        return FieldNode(
            alias=node.alias, name=node.name, arguments=tuple(arguments), directives=directives, selection_set=selection
        )

    def _drop_value(self, value: Any) -> None:
        if isinstance(value, VariableNode):
            self.dropped_vars.add(value.name.value)

    def _drop_vars(self, node: FieldNode) -> None:
        for arg in node.arguments or ():
            self._drop_value(arg.value)


def adapt(schema: GraphQLSchema, name: str) -> Prepared:
    """Document ``name`` adapted to ``schema`` (see the module docstring).

    :raises IonSchemaError: something the document needs is not in ``schema``.
    """
    from airflow_provider_ion.hooks._gql import Operation

    doc = parse(documents.document(name))
    adapter = _Adapter(schema, name)
    adapter.fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
    [op] = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    kind = op.operation.value
    root = schema.mutation_type if kind == "mutation" else schema.query_type
    if root is None:
        raise IonSchemaError(name, "schema", kind, (), what="root type")
    selection = adapter.selection(op.selection_set, root)
    if selection is None:
        raise IonSchemaError(name, root.name, "(any selected field)", list(root.fields))
    used = _used_variables(selection)
    var_defs = []
    for definition in op.variable_definitions or ():
        var = definition.variable.name.value
        if var not in used:
            adapter.dropped_vars.add(var)
            continue
        live = adapter.var_types.get(var)
        type_node = definition.type
        if live is not None:
            wanted = live
            if isinstance(definition.type, NonNullTypeNode) and not isinstance(live, GraphQLNonNull):
                wanted = GraphQLNonNull(live)
            if str(wanted) != _type_text(definition.type):
                adapter.notes.append(f"${var}: {_type_text(definition.type)} -> {wanted} (the argument's type here)")
            type_node = parse_type(str(wanted))
        var_defs.append(
            VariableDefinitionNode(
                variable=definition.variable, type=type_node, default_value=definition.default_value, directives=()
            )
        )
    new_op = OperationDefinitionNode(
        operation=op.operation, name=op.name, variable_definitions=tuple(var_defs), directives=op.directives,
        selection_set=selection,
    )  # fmt: skip
    adapted = DocumentNode(definitions=(new_op,))
    return Prepared(
        Operation(adapted, name, kind == "mutation"),
        {k: v for k, v in adapter.var_types.items() if k in used},
        frozenset(adapter.dropped_vars),
        tuple(adapter.notes),
    )


def _type_text(node: Any) -> str:
    from graphql import print_ast

    return print_ast(node)


def _used_variables(selection: SelectionSetNode) -> set[str]:
    used: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, VariableNode):
            used.add(value.name.value)
        for child in getattr(value, "fields", None) or getattr(value, "values", None) or ():
            walk(getattr(child, "value", child))

    def visit(sel: SelectionSetNode) -> None:
        for node in sel.selections:
            for arg in getattr(node, "arguments", None) or ():
                walk(arg.value)
            # FieldNode and InlineFragmentNode have one; SelectionNode (their base) does not declare it.
            child = getattr(node, "selection_set", None)
            if child is not None:
                visit(child)

    visit(selection)
    return used


def _coerce(value: Any, type_: Any, *, document: str, path: str) -> Any:
    if value is None:
        return None
    if isinstance(type_, GraphQLNonNull):
        return _coerce(value, type_.of_type, document=document, path=path)
    if isinstance(type_, GraphQLList):
        items = value if isinstance(value, list | tuple) else [value]
        return [_coerce(v, type_.of_type, document=document, path=path) for v in items]
    if isinstance(type_, GraphQLScalarType):
        if type_.name in ("Int", "ID") and isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value
    if isinstance(type_, GraphQLEnumType):
        resolved = resolve_enum_value(value, list(type_.values))
        return resolved if resolved is not None else value
    if isinstance(type_, GraphQLInputObjectType) and isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            definition = type_.fields.get(key)
            if definition is None:
                if item is None:
                    continue
                raise IonSchemaError(document, type_.name, key, closest(key, list(type_.fields)), what="input field")
            out[key] = _coerce(item, definition.type, document=document, path=f"{path}.{key}")
        return out
    return value


def coerce_loose(value: Any, key: str | None = None) -> Any:
    """Without a schema: digit-string ids become integers (ION's published inputs send integers, and
    a GraphQL ``ID`` accepts them), everything else is left alone."""
    if isinstance(value, Mapping):
        return {k: coerce_loose(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_loose(v, key) for v in value]
    if key in _ID_KEYS and isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


# --- the live schema ------------------------------------------------------------------------------


class LiveSchema:
    """One tenant's schema (from introspection) and the documents adapted to it, cached.

    Example::

        live = live_schema(hook)  # None when the server refuses introspection
        if live is not None:
            live.prepared("ListWebhookReceivers").notes
    """

    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        self.fetched_at = time.monotonic()
        self._prepared: dict[str, Prepared] = {}
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def prepared(self, name: str) -> Prepared:
        with self._lock:
            found = self._prepared.get(name)
        if found is None:
            found = adapt(self.schema, name)
            with self._lock:
                self._prepared[name] = found
        return found

    def note_once(self, name: str, notes: Sequence[str], logger: Any) -> None:
        if notes and name not in self._logged:
            self._logged.add(name)
            logger.info("ION schema: %s adapted to this tenant: %s", name, "; ".join(notes))

    def coerce(self, prepared: Prepared, variables: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if variables is None:
            return None
        out: dict[str, Any] = {}
        for key, value in variables.items():
            if key in prepared.dropped_vars:
                if value is not None:
                    raise IonSchemaError(
                        prepared.op.name or "document", "variables", key, (), what="argument for the variable",
                        hint="This tenant's schema has no argument for it; call without it.",
                    )  # fmt: skip
                continue
            type_ = prepared.var_types.get(key)
            out[key] = (
                _coerce(value, type_, document=prepared.op.name or "", path=key)
                if type_ is not None
                else coerce_loose(value, key)
            )
        return out

    def enum_values(self, type_name: str) -> list[str] | None:
        type_ = self.schema.get_type(type_name)
        return list(type_.values) if isinstance(type_, GraphQLEnumType) else None

    def type_fields(self, type_name: str) -> list[str] | None:
        type_ = self.schema.get_type(type_name)
        fields = getattr(type_, "fields", None)
        return list(fields) if fields is not None else None

    def input_type_of(self, document: str, variable: str = "input") -> GraphQLInputType | None:
        prepared = self.prepared(document)
        return prepared.var_types.get(variable)

    def has_mutation(self, name: str) -> bool:
        return self.schema.mutation_type is not None and name in self.schema.mutation_type.fields


@dataclass
class _Entry:
    live: LiveSchema | None
    expires: float


_CACHE: dict[tuple[str, str], _Entry] = {}
_CACHE_LOCK = threading.Lock()
_DISABLED_LOGGED: set[tuple[str, str]] = set()


def clear_schema_cache() -> None:
    """Forget every learned schema in this process (tests, a tenant upgrade)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _DISABLED_LOGGED.clear()


def pin_schema(conn_id: str, graphql_url: str, schema: GraphQLSchema | None, ttl: float = SCHEMA_TTL) -> None:
    """Use ``schema`` for this connection and URL for ``ttl`` seconds instead of introspecting
    (None: behave as if introspection were disabled). For tests, and for a tenant that refuses
    introspection but whose SDL you have (``graphql.build_schema(sdl)``)."""
    with _CACHE_LOCK:
        live = LiveSchema(schema) if schema is not None else None
        _CACHE[(conn_id, graphql_url)] = _Entry(live, time.monotonic() + ttl)


def _key(hook: IonHook) -> tuple[str, str]:
    return (hook.ion_conn_id, hook.settings.graphql_url)  # settings already read by the caller


def _cached(key: tuple[str, str]) -> _Entry | None:
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
    return entry if entry is not None and entry.expires > time.monotonic() else None


def _store(
    hook: IonHook, key: tuple[str, str], data: dict[str, Any] | None, error: Exception | None
) -> LiveSchema | None:
    live: LiveSchema | None = None
    if data is not None:
        try:
            live = LiveSchema(build_client_schema(data))  # type: ignore[arg-type]
        except Exception as exc:  # a broken introspection answer: same as none
            error = exc
    if live is None:
        with _CACHE_LOCK:
            first = key not in _DISABLED_LOGGED
            _DISABLED_LOGGED.add(key)
        if first:
            hook.log.warning(
                "ION schema: introspection is not available on %s (%s); sending the published documents as "
                "they are (fields no public page shows are left out). `airflow-ion doctor` says more.",
                key[1],
                str(error)[:200] if error else "no schema in the answer",
            )
    with _CACHE_LOCK:
        _CACHE[key] = _Entry(live, time.monotonic() + SCHEMA_TTL)
    return live


def _unavailable(hook: IonHook, key: tuple[str, str], error: Exception) -> None:
    with _CACHE_LOCK:
        first = key not in _DISABLED_LOGGED
        _DISABLED_LOGGED.add(key)
    if first:
        hook.log.warning("ION schema: introspection refused on %s (%s); using the published documents", key[1], error)


def live_schema(hook: IonHook, *, refresh: bool = False) -> LiveSchema | None:
    """The connection's live schema (introspection, cached per connection+URL and process), or None
    when the server refuses introspection. Auth and transport errors propagate."""
    hook.settings  # noqa: B018 - resolve the connection first
    key = _key(hook)
    entry = None if refresh else _cached(key)
    if entry is not None:
        return entry.live
    try:
        data = hook.execute(_INTROSPECTION)
    except IonGraphQLError as exc:
        return _store(hook, key, None, exc)
    except IonAuthError as exc:  # e.g. FORBIDDEN for __schema alone: not cached, the real call decides
        _unavailable(hook, key, exc)
        return None
    return _store(hook, key, data, None)


def _is_named(document: str) -> bool:
    name = document.strip()
    return bool(_NAME.match(name)) and name in documents.document_names()


def _finish(
    hook: IonHook, live: LiveSchema | None, name: str, variables: Mapping[str, Any] | None
) -> tuple[Operation, dict[str, Any] | None]:
    from airflow_provider_ion.hooks import _gql

    if live is None:
        op = _gql.operation(documents.published_document(name))
        return op, (coerce_loose(dict(variables)) if variables is not None else None)
    prepared = live.prepared(name)
    live.note_once(name, prepared.notes, hook.log)
    return prepared.op, live.coerce(prepared, variables)


def prepare(
    hook: IonHook, document: str, variables: Mapping[str, Any] | None, operation_name: str | None
) -> tuple[Operation, dict[str, Any] | None]:
    """The operation to send and its variables, adapted to the live schema for our named documents.

    GraphQL text (not one of our document names) is sent as it is.
    """
    from airflow_provider_ion.hooks import _gql

    if operation_name is not None or not _is_named(document):
        return _gql.operation(document, operation_name), (dict(variables) if variables is not None else None)
    return _finish(hook, live_schema(hook), document.strip(), variables)


# --- headers as separate mutations ------------------------------------------------------------------


def _headers_apart(live: LiveSchema | None, document: str) -> bool:
    if live is None or not all(live.has_mutation(m) for m in _HEADER_MUTATIONS):
        return False
    input_type = get_named_type(live.input_type_of(document))
    return isinstance(input_type, GraphQLInputObjectType) and "headers" not in input_type.fields


def _split(live: LiveSchema | None, document: str, variables: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    values = variables.get("input") or {}
    if "headers" not in values or not _headers_apart(live, document):
        return variables, None
    values = dict(values)
    headers = values.pop("headers")
    return {**variables, "input": values}, headers


def split_headers(hook: IonHook, document: str, variables: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """``(variables without input.headers, headers)`` when this tenant sets headers with separate
    mutations; ``(variables, None)`` otherwise."""
    return _split(live_schema(hook), document, variables)


def _header_calls(
    receiver: Mapping[str, Any], headers: Sequence[Mapping[str, str]]
) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("RemoveHeaderFromWebhookReceiver", {"input": {"receiverId": receiver["id"], "headerId": h["id"]}})
        for h in receiver.get("headers") or []
    ]
    calls += [
        ("AddHeaderToWebhookReceiver", {"input": {"receiverId": receiver["id"], "key": h["key"], "value": h["value"]}})
        for h in headers
    ]
    return calls


def _merge(receiver: dict[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    payload = next(iter(data.values()))["webhookReceiver"]
    return {**receiver, "_etag": payload.get("_etag", receiver.get("_etag")), "headers": payload.get("headers", [])}


def apply_headers(
    hook: IonHook, receiver: dict[str, Any], headers: Sequence[Mapping[str, str]] | None
) -> dict[str, Any]:
    """Make ``receiver``'s headers exactly ``headers`` with the header mutations (None: no change)."""
    if headers is None:
        return receiver
    for document, variables in _header_calls(receiver, headers):
        receiver = _merge(receiver, hook.execute(document, variables))
    return receiver
