"""Emulator profiles: the published ION by default, and one variant per thing ION has not published.

The default profile follows ION's public pages: ``totalCount`` inside ``pageInfo``, ``createdBy`` an
object, integer-valued ``ID``s, plural resource names (the manual's ``RUNS``), a stale etag answered
as HTTP 409 (the error-code page lists "409: The _etag mismatch"), the token at
``/realms/api-keys/...`` and ``x-ion-signature: sha256=<hex>``. Each other profile changes one
unknown, so a test (or ``airflow-ion doctor``) can show the provider copes with it::

    with EmulatorServer(profile="singular-resources") as ion:
        ...

    airflow-ion emulator --profile int-ids
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from airflow_provider_ion.webhooks.signature import DEFAULT_SCHEME, SignatureScheme

__all__ = ["PROFILES", "Profile", "get_profile", "profile_names"]

TOKEN_PATH = "/realms/api-keys/protocol/openid-connect/token"
LEGACY_TOKEN_PATH = "/auth" + TOKEN_PATH

_SINGULAR = ("RUN", "RUN_STEP", "PART", "PART_INVENTORY", "ISSUE", "PURCHASE_ORDER", "RECEIPT", "FILE_ATTACHMENT")

_HEADER_MUTATIONS_SDL = """
"Assumed shape: ION's permission list names AddHeaderToWebhookReceiver / RemoveHeaderFromWebhookReceiver."
input AddHeaderToWebhookReceiverInput {
  receiverId: ID!
  key: String!
  value: String!
}

input RemoveHeaderFromWebhookReceiverInput {
  receiverId: ID!
  headerId: ID!
}

type AddHeaderToWebhookReceiverPayload {
  webhookReceiver: WebhookReceiver!
}

type RemoveHeaderFromWebhookReceiverPayload {
  webhookReceiver: WebhookReceiver!
}

extend type Mutation {
  addHeaderToWebhookReceiver(input: AddHeaderToWebhookReceiverInput!): AddHeaderToWebhookReceiverPayload!
  removeHeaderFromWebhookReceiver(input: RemoveHeaderFromWebhookReceiverInput!): RemoveHeaderFromWebhookReceiverPayload!
}
"""


@dataclass(frozen=True)
class Profile:
    """One guess about ION. ``signature_style`` is ``"ion"`` (one header, :attr:`scheme`) or
    ``"standard-webhooks"`` (``webhook-id``/``webhook-timestamp``/``webhook-signature: v1,<base64>``
    over ``id.timestamp.body``, keyed with the receiver's sharedSecret bytes)."""

    name: str
    description: str
    resources: Literal["plural", "singular"] = "plural"
    id_type: Literal["ID", "Int"] = "ID"
    header_mutations: bool = False
    token_path: str = TOKEN_PATH
    introspection: bool = True
    stale_etag: Literal["409", "200"] = "409"
    total_count: Literal["pageInfo", "connection"] = "pageInfo"
    scheme: SignatureScheme = DEFAULT_SCHEME
    signature_style: Literal["ion", "standard-webhooks"] = "ion"

    def sdl(self, webhook_sdl: str, domain_sdl: str) -> str:
        """The executable SDL of this profile from the published webhook SDL and the domain SDL."""
        sdl = webhook_sdl
        if self.resources == "singular":
            body = "\n".join(f"  {v}" for v in _SINGULAR)
            sdl = re.sub(r"enum ResourceEnum \{[^}]*\}", "enum ResourceEnum {\n" + body + "\n}", sdl)
        if self.header_mutations:
            sdl = re.sub(r"\n  headers: \[WebhookHeaderInput!\]", "", sdl) + _HEADER_MUTATIONS_SDL
        if self.total_count == "connection":
            sdl = re.sub(r'  "Objects matching the query, over all pages[^\n]*\n  totalCount: Int\n', "", sdl)
            sdl = re.sub(r"(type Webhook\w+Connection \{\n)", r"\1  totalCount: Int!\n", sdl)
        full = sdl + "\n" + domain_sdl
        if self.id_type == "Int":
            full = re.sub(r"\bID\b", "Int", full)
        return full


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("default", "ION as its public pages describe it"),
        Profile("singular-resources", "RUN, ISSUE, PURCHASE_ORDER (newer docs)", resources="singular"),
        Profile("int-ids", "ids typed Int instead of ID (a string id is rejected)", id_type="Int"),
        Profile("header-mutations", "headers set by add/remove mutations", header_mutations=True),
        Profile("legacy-token-path", "token at /auth/realms/... (old Keycloak)", token_path=LEGACY_TOKEN_PATH),
        Profile("no-introspection", "introspection (__schema, __type) refused", introspection=False),
        Profile("etag-in-200", "stale etag as HTTP 200 + errors[]", stale_etag="200"),
        Profile("connection-totalcount", "totalCount on the connection instead of pageInfo", total_count="connection"),
        Profile(
            "signature-base64",
            "x-ion-signature: base64 digest without prefix",
            scheme=SignatureScheme(encoding="base64", prefix=""),
        ),
        Profile(
            "standard-webhooks",
            "Standard Webhooks signing: webhook-signature v1,<base64> over id.timestamp.body",
            signature_style="standard-webhooks",
        ),
    )
}  # fmt: skip


def profile_names() -> list[str]:
    return list(PROFILES)


def get_profile(profile: str | Profile | None) -> Profile:
    """The profile named ``profile`` (a :class:`Profile` passes through; None is ``default``).

    :raises ValueError: no such profile; the message lists the known ones.
    """
    if isinstance(profile, Profile):
        return profile
    name = (profile or "default").strip().lower()
    if name not in PROFILES:
        raise ValueError(f"Unknown emulator profile {profile!r}; known profiles: {', '.join(PROFILES)}")
    return PROFILES[name]
