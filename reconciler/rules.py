"""The built-in security rules for MCP servers and their clients, each with the source it comes from (pure).

Ids are stable (``MCP001``...): a team's policy, a suppression and a SARIF alert name them. A rule
judges only fields that are there (see :class:`reconciler.findings.Subject`), and a field of the wrong
type (the live API can hold what a manifest cannot) is nothing to judge: a check never raises. The
README's catalogue is generated from this module (``catalogue_markdown``), so the two cannot disagree.

A rule applies to one kind of object; where servers and clients share a concern (their callback URLs)
the check function is shared and each kind has a rule of its own (MCP007 and MCP019).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from reconciler.findings import Check, Hit, Param, Reference, Rule, Subject

# ---- the sources -----------------------------------------------------------------------------------

MCP_AUTH = "https://modelcontextprotocol.io/specification/2025-06-18/basic/authorization"
MCP_SECURITY = "https://modelcontextprotocol.io/specification/2025-06-18/basic/security_best_practices"
# Client ID Metadata Documents first appear in this revision of the specification.
MCP_AUTH_CIMD = "https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization"
DESCOPE_MCP = "https://docs.descope.com/mcp"
RFC = "https://www.rfc-editor.org/rfc/rfc{number}.html#section-{section}"


def rfc(number: int, section: str, title: str) -> Reference:
    return Reference(f"RFC {number} §{section}: {title}", RFC.format(number=number, section=section))


MCP_REDIRECTS = Reference(
    "MCP Authorization: Communication Security (redirect URIs MUST be localhost or HTTPS)",
    f"{MCP_AUTH}#communication-security",
)
MCP_EXACT_REDIRECTS = Reference(
    "MCP Authorization: Open Redirection (exact redirect URIs against pre-registered values)",
    f"{MCP_AUTH}#open-redirection",
)
MCP_CANONICAL_URI = Reference(
    "MCP Authorization: Canonical Server URI (the resource parameter)", f"{MCP_AUTH}#canonical-server-uri"
)
MCP_AUDIENCE = Reference(
    "MCP Authorization: Token Audience Binding and Validation",
    f"{MCP_AUTH}#token-audience-binding-and-validation",
)
MCP_TOKEN_THEFT = Reference(
    "MCP Authorization: Token Theft (short-lived access tokens)", f"{MCP_AUTH}#token-theft"
)
MCP_CONFUSED_DEPUTY = Reference(
    "MCP Security Best Practices: Confused Deputy Problem (consent for each dynamically registered client)",
    f"{MCP_SECURITY}#confused-deputy-problem",
)
MCP_CIMD = Reference("MCP Authorization: Client ID Metadata Documents", MCP_AUTH_CIMD)
MCP_CIMD_TRUST = Reference(
    "MCP Authorization: Client ID Metadata Document Security, Trust Policies",
    f"{MCP_AUTH_CIMD}#trust-policies",
)
DESCOPE_CIMD = Reference("Descope: MCP server CIMD settings", DESCOPE_MCP)
DESCOPE_REGISTRATION = Reference("Descope: MCP server client registration (DCR)", DESCOPE_MCP)
DESCOPE_AUTHORIZATION_INFO = Reference(
    "Descope: forceAddAllAuthorizationInfo (all of the user's tenants, roles and permissions in tokens)",
    DESCOPE_MCP,
)
RFC6749_IMPERSONATION = rfc(6749, "10.2", "Client Impersonation")
RFC7591_SECURITY = rfc(7591, "5", "Security Considerations (client metadata is self-asserted)")
RFC8707_RESOURCE = rfc(8707, "2", "Resource Parameter")
RFC9700_PRIVILEGES = rfc(9700, "2.3", "Access Token Privilege Restriction")
RFC9700_REDIRECTS = rfc(9700, "2.1", "Protecting Redirect-Based Flows")
RFC6819_SHORT_EXPIRY = rfc(6819, "5.1.5.3", "Use Short Expiration Time")

# ---- helpers the rules share --------------------------------------------------------------------------

# What one of a lifetime's units is worth in seconds (the units of sessionSettings).
UNIT_SECONDS: Mapping[str, int] = MappingProxyType(
    {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
)
_URI_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): where RFC 8252 §7.3 and the MCP
    specification allow plain http for a redirect."""
    if not host:
        return False
    host = host.rstrip(".")  # "localhost." is localhost
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one: a field of another type is not judged.
    (The concrete types first: an abstract-class check costs more than the rest of a rule.)"""
    if isinstance(value, dict | MappingProxyType):
        return value
    return value if isinstance(value, Mapping) else {}


def _items(value: object) -> tuple[object, ...]:
    """The items of ``value`` if it is a JSON array, else none (never the characters of a string)."""
    return tuple(value) if isinstance(value, list | tuple) else ()


def _strings(value: object) -> Iterator[tuple[int, str]]:
    """The strings of the array ``value``, each with its index (other items are skipped)."""
    for index, item in enumerate(_items(value)):
        if isinstance(item, str):
            yield index, item


def _is_on(settings: Mapping[str, Any], key: str) -> bool:
    """Whether the flag ``key`` is true: only a boolean true counts, not a string that reads like one."""
    return settings.get(key) is True


def connection_scopes(fields: Mapping[str, Any]) -> list[str]:
    """The names of the approved scopes in ``fields`` that grant access to the user's connections: a
    scope in the ``connections`` category, or, where no category is known (a manifest that leaves it
    out), a scope with values."""
    names: list[str] = []
    for item in _items(fields.get("approvedScopes")):
        scope = _mapping(item)
        category = scope.get("category")
        if category == "connections" or (not category and _items(scope.get("values"))):
            names.append(str(scope.get("name") or ""))
    return names


def enabled_domain_patterns(subject: Subject) -> Iterator[tuple[int, str]]:
    """The patterns of the enabled CIMD domain policies, with their index, when CIMD is enabled."""
    cimd = _mapping(subject.fields.get("cimdSettings"))
    if not _is_on(cimd, "enabled"):
        return
    for index, item in enumerate(_items(_mapping(cimd.get("domainPolicies")).get("policies"))):
        policy = _mapping(item)
        pattern = policy.get("domainPattern")
        if _is_on(policy, "enabled") and isinstance(pattern, str) and pattern.strip():
            yield index, pattern


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


@functools.lru_cache(maxsize=8192)  # the same URLs are judged before and after a change
def _scheme_and_host(url: str) -> tuple[str, str | None]:
    try:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), parts.hostname
    except ValueError:  # "http://[::1/cb": its host cannot be read, so it is not known to be loopback
        found = _URI_SCHEME.match(url.strip())
        return (found.group(1).lower() if found else ""), None


def _lifetime(settings: Mapping[str, Any], field: str) -> tuple[float, str] | None:
    """A session setting's lifetime in seconds and as written (``2 weeks``); None when the amount is
    not a number or its unit is missing or unknown (nothing to judge)."""
    amount = settings.get(field)
    unit = settings.get(f"{field}Unit")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not isinstance(unit, str):
        return None
    seconds = UNIT_SECONDS.get(unit.lower())
    if seconds is None:
        return None
    return amount * seconds, f"{amount} {unit}"


# ---- the checks -------------------------------------------------------------------------------------------


def _cimd_any_domain(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
    for index, pattern in enabled_domain_patterns(subject):
        if not pattern.strip().replace("*", "").replace(".", ""):
            yield Hit(
                f"CIMD domain policy '{pattern}' lets a client metadata document on any domain register",
                ("cimdSettings", "domainPolicies", "policies", index, "domainPattern"),
                pattern,
            )


def is_single_label_wildcard(pattern: str) -> bool:
    """``*.com``, ``*.io``: a wildcard over every domain under one label, a top-level domain.

    A public suffix of two labels or more (``*.co.uk``, ``*.github.io``, where anyone can get a name)
    is not told apart from an organization's own domain (``*.example.com``): that needs the Public
    Suffix List, which this rule does not carry. Its fix says so to the reader."""
    head, dot, rest = pattern.strip().rstrip(".").partition(".")
    wildcard = bool(head) and not head.replace("*", "")  # "*", or "**" as a live answer may hold
    return wildcard and bool(dot) and bool(rest) and "." not in rest and "*" not in rest


def _cimd_broad_domain(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
    for index, pattern in enabled_domain_patterns(subject):
        if is_single_label_wildcard(pattern):
            yield Hit(
                f"CIMD domain policy '{pattern}' trusts every domain under a top-level domain: anyone "
                "who registers a domain there can publish a client metadata document and register",
                ("cimdSettings", "domainPolicies", "policies", index, "domainPattern"),
                pattern,
            )


def _unwritten(subject: Subject, settings: Mapping[str, Any], key: str) -> bool:
    """Whether ``key`` inside a nested setting is left out by the manifests (lint): apply keeps its
    live value then, which lint cannot know (plan judges the value apply leaves)."""
    return subject.written and key not in settings


def _dcr_scopes_by_default(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
    registration = _mapping(subject.fields.get("dynamicRegistration"))
    if _unwritten(subject, registration, "disableApprovedScopesAsDefault"):
        return
    if _is_on(registration, "enabled") and not _is_on(registration, "disableApprovedScopesAsDefault"):
        yield Hit(
            "dynamic registration is enabled and disableApprovedScopesAsDefault is not true: every "
            "self-registered client receives all of the server's approved scopes by default",
            ("dynamicRegistration", "disableApprovedScopesAsDefault"),
        )


def _dcr_without_flow(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
    registration = _mapping(subject.fields.get("dynamicRegistration"))
    if _unwritten(subject, registration, "flowId"):
        return
    flow = registration.get("flowId")
    unset = flow is None or (isinstance(flow, str) and not flow.strip())
    if _is_on(registration, "enabled") and unset:
        yield Hit(
            "dynamic registration is enabled with no registration flow (flowId): anyone can register a "
            "client, and nothing checks the registration",
            ("dynamicRegistration", "flowId"),
        )


def _consent_skipped_connections(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
    connections = connection_scopes(subject.fields)
    if _is_on(subject.fields, "skipConsentScreen") and connections:
        yield Hit(
            f"the consent screen is skipped on a server whose connection scopes ({_quoted(connections)}) "
            "hand a client the user's third-party connections without the user approving it",
            ("skipConsentScreen",),
        )


def _consent_skipped_open_registration(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
    if not _is_on(subject.fields, "skipConsentScreen"):
        return
    open_to = [
        name
        for name, key in (("dynamic client registration", "dynamicRegistration"), ("CIMD", "cimdSettings"))
        if _is_on(_mapping(subject.fields.get(key)), "enabled")
    ]
    if open_to:
        yield Hit(
            f"the consent screen is skipped while {' and '.join(open_to)} "
            f"{'are' if len(open_to) > 1 else 'is'} enabled: a client anyone "
            "registered obtains tokens without the user ever approving it",
            ("skipConsentScreen",),
        )


def _each_value(field: str, judge: Callable[[str], str | None]) -> Check:
    """A check over one list field of URLs: ``judge`` says what is wrong with a value (None: nothing);
    each hit points at the value and is told apart by it."""

    def check(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
        for index, value in _strings(subject.fields.get(field)):
            if (message := judge(value)) is not None:
                yield Hit(message, (field, index), value)

    return check


def _plain_http_callback(url: str) -> str | None:
    if url.lstrip()[:5].lower() != "http:":  # the host matters only for plain http: most are not
        return None
    scheme, host = _scheme_and_host(url)
    if scheme != "http" or is_loopback_host(host):
        return None
    return (
        f"callback URL '{url}' is plain http on a host that is not loopback: an authorization code "
        "sent there can be read on the network"
    )


def _custom_scheme_callback(url: str) -> str | None:
    found = _URI_SCHEME.match(url.strip())
    scheme = found.group(1).lower() if found else ""
    if scheme in ("http", "https"):
        return None
    what = f"uses the scheme '{scheme}'" if scheme else "has no scheme"
    return (
        f"callback URL '{url}' {what}, neither https nor http to loopback: whoever handles that "
        "scheme receives the authorization code"
    )


def _wildcard_callback(url: str) -> str | None:
    if "*" not in url:
        return None
    return (
        f"callback URL '{url}' holds a wildcard '*': redirect URIs are matched exactly, and a "
        "pattern lets an authorization code go to any address it matches"
    )


def _fragment_callback(url: str) -> str | None:
    if "#" not in url:
        return None
    return f"callback URL '{url}' holds a fragment ('#'), which a redirection endpoint must not have"


def _audience_not_https_value(audience: str) -> str | None:
    scheme, host = _scheme_and_host(audience)
    if host and (scheme == "https" or (scheme == "http" and is_loopback_host(host))):
        return None
    why = (
        "is plain http on a host that is not loopback: bearer tokens sent to it travel unencrypted"
        if scheme == "http" and host
        else "is not an absolute https URI, as the server's canonical URI is"
    )
    return f"audience '{audience}' {why}"


def _audience_fragment_value(audience: str) -> str | None:
    if "#" not in audience:
        return None
    return f"audience '{audience}' holds a fragment ('#'), which a resource indicator must not have"


def _audience_not_canonical_value(audience: str) -> str | None:
    problems = canonical_uri_problems(audience)
    if not problems:
        return None
    return (
        f"audience '{audience}' is not in canonical form (it has {', '.join(problems)}), so a client "
        "sending the server's canonical URI as its resource may not match it"
    )


_callback_plain_http = _each_value("approvedCallbackUrls", _plain_http_callback)
_callback_custom_scheme = _each_value("approvedCallbackUrls", _custom_scheme_callback)
_callback_wildcard = _each_value("approvedCallbackUrls", _wildcard_callback)
_callback_fragment = _each_value("approvedCallbackUrls", _fragment_callback)
_audience_not_https = _each_value("audienceWhitelist", _audience_not_https_value)
_audience_fragment = _each_value("audienceWhitelist", _audience_fragment_value)
_audience_not_canonical = _each_value("audienceWhitelist", _audience_not_canonical_value)


def canonical_uri_problems(uri: str) -> list[str]:
    """What keeps ``uri`` (a URI with an authority, ``scheme://host...``) from the canonical form of
    an MCP server's URI; none for another kind of URI, which MCP011 reports."""
    text = uri.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return []
    if not parts.netloc:
        return []
    problems: list[str] = []
    # urlsplit lowers the scheme and .hostname lowers the host: read them as written.
    written_scheme = text.partition(":")[0]
    written_host = parts.netloc.rpartition("@")[2]
    if written_scheme != written_scheme.lower() or written_host != written_host.lower():
        problems.append("upper-case letters in its scheme or host")
    if parts.path.endswith("/"):
        problems.append("a trailing slash")
    if "?" in text.partition("#")[0]:
        problems.append("a query component")
    return problems


def _no_audience(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
    # Only a list that is there and empty: an absent field is unmanaged (a manifest) or unknown.
    if "audienceWhitelist" not in subject.fields:
        return
    value = subject.fields.get("audienceWhitelist")
    if isinstance(value, list | tuple) and not value:
        yield Hit(
            "audienceWhitelist is empty: tokens are not restricted to this server's audience",
            ("audienceWhitelist",),
        )


MAX_REFRESH_DAYS = "maxRefreshTokenDays"
MAX_SESSION_MINUTES = "maxSessionTokenMinutes"
REFRESH_PARAMS: Mapping[str, Param] = MappingProxyType(
    {MAX_REFRESH_DAYS: Param(30, "The longest refresh token lifetime allowed, in days.")}
)
SESSION_PARAMS: Mapping[str, Param] = MappingProxyType(
    {MAX_SESSION_MINUTES: Param(60, "The longest session (access) token lifetime allowed, in minutes.")}
)


def _refresh_token_lifetime(subject: Subject, params: Mapping[str, int]) -> Iterator[Hit]:
    settings = _mapping(subject.fields.get("sessionSettings"))
    lifetime = _lifetime(settings, "refreshTokenExpiration")
    limit = params.get(MAX_REFRESH_DAYS, REFRESH_PARAMS[MAX_REFRESH_DAYS].default)
    if _is_on(settings, "enabled") and lifetime is not None and lifetime[0] > limit * UNIT_SECONDS["days"]:
        yield Hit(
            f"refresh tokens last {lifetime[1]}, longer than the policy's {limit} days "
            f"({MAX_REFRESH_DAYS}): a stolen refresh token keeps working that long",
            ("sessionSettings", "refreshTokenExpiration"),
        )


def _session_token_lifetime(subject: Subject, params: Mapping[str, int]) -> Iterator[Hit]:
    settings = _mapping(subject.fields.get("sessionSettings"))
    lifetime = _lifetime(settings, "sessionTokenExpiration")
    limit = params.get(MAX_SESSION_MINUTES, SESSION_PARAMS[MAX_SESSION_MINUTES].default)
    if _is_on(settings, "enabled") and lifetime is not None and lifetime[0] > limit * UNIT_SECONDS["minutes"]:
        yield Hit(
            f"session tokens last {lifetime[1]}, longer than the policy's {limit} minutes "
            f"({MAX_SESSION_MINUTES}): a leaked token keeps working that long",
            ("sessionSettings", "sessionTokenExpiration"),
        )


def _approved_names(server_fields: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(
        name
        for item in _items(server_fields.get("approvedScopes"))
        if isinstance(name := _mapping(item).get("name"), str) and name
    )


class _ByServer:
    """What a client rule derives from its server's fields, kept for the next client of the same
    server (a server's clients are judged one after another): once per server, not once per client."""

    def __init__(self, derive: Callable[[Mapping[str, Any]], Any]) -> None:
        self._derive = derive
        self._last: tuple[Mapping[str, Any], Any] | None = None

    def __call__(self, server_fields: Mapping[str, Any]) -> Any:
        if self._last is None or self._last[0] is not server_fields:
            self._last = (server_fields, self._derive(server_fields))
        return self._last[1]


_approved_of = _ByServer(_approved_names)
_connections_of = _ByServer(lambda fields: tuple(connection_scopes(fields)))


def _client_all_scopes(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
    approved: frozenset[str] = _approved_of(subject.server_fields)
    requested = {scope for _index, scope in _strings(subject.fields.get("scopes"))}
    # With one approved scope, having all of them is having the only one: nothing to narrow.
    if len(approved) >= 2 and approved <= requested:
        yield Hit(
            f"the client has every one of its server's {len(approved)} approved scopes: "
            "it holds more than it is likely to need",
            ("scopes",),
        )


def _force_all_authorization_info(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
    if not _is_on(subject.fields, "forceAddAllAuthorizationInfo"):
        return
    connections: tuple[str, ...] = _connections_of(subject.server_fields)
    if connections:
        yield Hit(
            "forceAddAllAuthorizationInfo puts all of the user's tenants, roles and permissions in this "
            f"client's tokens, on a server with connection scopes ({_quoted(connections)})",
            ("forceAddAllAuthorizationInfo",),
        )


# ---- the catalogue ----------------------------------------------------------------------------------------

CALLBACK_PLAIN_HTTP = Rule(
    id="MCP007",
    name="callback-plain-http",
    severity="high",
    applies_to="server",
    summary="A callback URL uses plain http on a host that is not loopback",
    rationale="Authorization codes travel in the redirect; only https, or http to the user's own "
    "machine (loopback), keeps them off the network.",
    fix="Use https, or http://127.0.0.1:PORT / http://localhost:PORT for a native client.",
    references=(
        MCP_REDIRECTS,
        RFC9700_REDIRECTS,
        rfc(8252, "7.3", "Loopback Interface Redirection"),
    ),
    check=_callback_plain_http,
)
CALLBACK_WILDCARD = Rule(
    id="MCP009",
    name="callback-wildcard",
    severity="high",
    applies_to="server",
    summary="A callback URL holds a wildcard '*'",
    rationale="Redirect URIs must be compared by exact string matching; a wildcard makes the URL a "
    "pattern, and any address it matches (one an attacker controls) can receive authorization codes.",
    fix="List every callback URL in full, one entry each.",
    references=(RFC9700_REDIRECTS, MCP_EXACT_REDIRECTS),
    check=_callback_wildcard,
)
CALLBACK_FRAGMENT = Rule(
    id="MCP010",
    name="callback-fragment",
    severity="medium",
    applies_to="server",
    summary="A callback URL holds a fragment ('#')",
    rationale="A redirection endpoint URI must not include a fragment component: the authorization "
    "server adds its response to the URL, and a fragment makes where that lands ambiguous.",
    fix="Remove the '#' and what follows it from the callback URL.",
    references=(rfc(6749, "3.1.2", "Redirection Endpoint"),),
    check=_callback_fragment,
)


def for_clients(rule: Rule, rule_id: str) -> Rule:
    """``rule``, judging a client's own field instead of a server's: a rule applies to one kind, so
    the client's twin has an id and a name of its own (``client-`` and the server rule's name)."""
    return replace(rule, id=rule_id, name=f"client-{rule.name}", applies_to="client")


CALLBACK_CUSTOM_SCHEME = Rule(
    id="MCP008",
    name="callback-custom-scheme",
    severity="medium",
    applies_to="server",
    summary="A callback URL uses a scheme other than http or https (com.example.app:, javascript:)",
    rationale="MCP requires redirect URIs to be localhost or https; any app can typically register "
    "a private-use scheme, and whichever handles it receives the authorization code.",
    fix="Use an https callback URL (a claimed https link for a mobile app) or http to loopback.",
    references=(
        MCP_REDIRECTS,
        rfc(8252, "8.1", "Protecting the Authorization Code"),
        rfc(8252, "7.1", "Private-Use URI Scheme Redirection"),
    ),
    check=_callback_custom_scheme,
)

BUILTIN_RULES: tuple[Rule, ...] = (
    Rule(
        id="MCP001",
        name="cimd-any-domain",
        severity="critical",
        applies_to="server",
        summary="A CIMD domain policy matches every domain",
        rationale="Any website can then publish a client metadata document and register as a client of "
        "this server; CIMD relies on the authorization server restricting which domains it trusts.",
        fix="Name the domains you trust (example.com, *.example.com) instead of a bare wildcard.",
        references=(MCP_CIMD, DESCOPE_CIMD),
        check=_cimd_any_domain,
    ),
    Rule(
        id="MCP002",
        name="cimd-broad-domain",
        severity="high",
        applies_to="server",
        summary="A CIMD domain policy is a wildcard over a top-level domain, such as '*.com'",
        rationale="Anyone can register a domain under a top-level domain, publish a client metadata "
        "document there and register as a client; such a policy trusts nobody in particular.",
        fix="Name the domains you trust (example.com, *.example.com); wildcards over a public suffix of "
        "two labels (*.co.uk, *.github.io) are not detected, so check those by hand.",
        references=(MCP_CIMD_TRUST, DESCOPE_CIMD),
        check=_cimd_broad_domain,
    ),
    Rule(
        id="MCP003",
        name="dcr-scopes-by-default",
        severity="high",
        applies_to="server",
        summary="Dynamically registered clients receive all approved scopes by default",
        rationale="Anyone can register a client and its metadata is self-asserted, so handing every "
        "such client all of the server's scopes defeats restricting each token to what it needs.",
        fix="Set dynamicRegistration.disableApprovedScopesAsDefault: true, so that a registered client "
        "gets only the scopes it requests and the user approves.",
        references=(RFC9700_PRIVILEGES, RFC7591_SECURITY, DESCOPE_REGISTRATION),
        check=_dcr_scopes_by_default,
    ),
    Rule(
        id="MCP004",
        name="dcr-without-flow",
        severity="medium",
        applies_to="server",
        summary="Dynamic registration is enabled with no registration flow",
        rationale="Client metadata in a registration request is self-asserted; without a registration "
        "flow nothing looks at a request before anyone's client is registered.",
        fix="Set dynamicRegistration.flowId to a flow that checks registrations, or turn dynamic "
        "registration off and pre-register the clients.",
        references=(RFC7591_SECURITY, DESCOPE_REGISTRATION),
        check=_dcr_without_flow,
    ),
    Rule(
        id="MCP005",
        name="consent-skipped-connections",
        severity="high",
        applies_to="server",
        summary="The consent screen is skipped on a server with connection scopes",
        rationale="Connection scopes reach the user's third-party accounts; the user should see which "
        "client asks for them, and for what, before any token that carries them is issued.",
        fix="Set skipConsentScreen: false (and a consentFlowId), or move connection scopes to a server "
        "whose users are asked.",
        references=(RFC6749_IMPERSONATION, DESCOPE_REGISTRATION),
        check=_consent_skipped_connections,
    ),
    Rule(
        id="MCP006",
        name="consent-skipped-open-registration",
        severity="critical",
        applies_to="server",
        summary="The consent screen is skipped while dynamic registration or CIMD is enabled",
        rationale="A client anyone registered, with a redirect URI of its choosing, then obtains tokens "
        "without the user ever approving it: the confused deputy that per-client consent prevents.",
        fix="Set skipConsentScreen: false, or turn off dynamic registration and CIMD and pre-register "
        "the clients you trust.",
        references=(MCP_CONFUSED_DEPUTY, RFC6749_IMPERSONATION, RFC7591_SECURITY),
        check=_consent_skipped_open_registration,
    ),
    CALLBACK_PLAIN_HTTP,
    CALLBACK_CUSTOM_SCHEME,
    CALLBACK_WILDCARD,
    CALLBACK_FRAGMENT,
    Rule(
        id="MCP011",
        name="audience-not-https",
        severity="medium",
        applies_to="server",
        summary="An allowed token audience is not an absolute https URI (plain http to loopback is allowed)",
        rationale="The audience is the server's canonical URI, which clients send as their resource "
        "indicator and then send bearer tokens to; those must travel over TLS.",
        fix="List the server's https URL, e.g. https://mcp.example.com/mcp.",
        references=(MCP_CANONICAL_URI, RFC8707_RESOURCE, rfc(6750, "5.3", "Summary of Recommendations")),
        check=_audience_not_https,
    ),
    Rule(
        id="MCP012",
        name="audience-fragment",
        severity="medium",
        applies_to="server",
        summary="An allowed token audience holds a fragment ('#')",
        rationale="A resource indicator must not include a fragment component, so no client can send "
        "this value as its resource and tokens cannot be bound to it.",
        fix="Remove the '#' and what follows it from the audience.",
        references=(RFC8707_RESOURCE, MCP_CANONICAL_URI),
        check=_audience_fragment,
    ),
    Rule(
        id="MCP013",
        name="audience-not-canonical",
        severity="low",
        applies_to="server",
        summary="An allowed token audience has a trailing slash, a query, or upper-case scheme or host",
        rationale="Clients send the server's canonical URI (lower-case scheme and host, no trailing "
        "slash, no query) as their resource, and a token bound to another spelling may not match it.",
        fix="Write the audience in canonical form, e.g. https://mcp.example.com/mcp.",
        references=(MCP_CANONICAL_URI, RFC8707_RESOURCE),
        check=_audience_not_canonical,
    ),
    Rule(
        id="MCP014",
        name="no-audience",
        severity="medium",
        applies_to="server",
        summary="The server's list of allowed token audiences is present and empty",
        rationale="Access tokens should be restricted to the server they are for; with no audience, a "
        "token is not bound to this server and one issued for it can be replayed elsewhere.",
        fix="List the server's canonical URI in audienceWhitelist, e.g. https://mcp.example.com/mcp.",
        references=(MCP_AUDIENCE, RFC8707_RESOURCE, RFC9700_PRIVILEGES),
        check=_no_audience,
    ),
    Rule(
        id="MCP015",
        name="refresh-token-lifetime",
        severity="medium",
        applies_to="server",
        summary="Refresh tokens live longer than the policy's maximum (maxRefreshTokenDays)",
        rationale="A refresh token keeps minting access tokens for as long as it lives, so a leaked one "
        "is usable for all of that time.",
        fix="Lower sessionSettings.refreshTokenExpiration, or raise maxRefreshTokenDays in the "
        "Project's policy if the lifetime is intended.",
        references=(rfc(9700, "4.14", "Refresh Token Protection"), RFC6819_SHORT_EXPIRY),
        check=_refresh_token_lifetime,
        params=REFRESH_PARAMS,
    ),
    Rule(
        id="MCP016",
        name="session-token-lifetime",
        severity="medium",
        applies_to="server",
        summary="Session (access) tokens live longer than the policy's maximum (maxSessionTokenMinutes)",
        rationale="A bearer token works for whoever holds it until it expires; short-lived tokens limit "
        "what a leaked one can do.",
        fix="Lower sessionSettings.sessionTokenExpiration (an hour or less), or raise "
        "maxSessionTokenMinutes in the Project's policy if the lifetime is intended.",
        references=(RFC6819_SHORT_EXPIRY, MCP_TOKEN_THEFT, rfc(6750, "5.3", "Summary of Recommendations")),
        check=_session_token_lifetime,
        params=SESSION_PARAMS,
    ),
    Rule(
        id="MCP017",
        name="client-all-scopes",
        severity="low",
        applies_to="client",
        summary="A client has every approved scope of its server (of two or more)",
        rationale="A token's privileges should be restricted to what the client needs; a client holding "
        "everything the server offers rarely needs it all.",
        fix="Give the client only the scopes it uses.",
        references=(RFC9700_PRIVILEGES,),
        check=_client_all_scopes,
    ),
    Rule(
        id="MCP018",
        name="force-all-authorization-info",
        severity="medium",
        applies_to="client",
        summary="A client forces all authorization info into tokens, on a server with connection scopes",
        rationale="Its tokens then carry all of the user's tenants, roles and permissions rather than "
        "what its scopes grant, on a server whose tokens also reach the user's connections.",
        fix="Set forceAddAllAuthorizationInfo: false on the client and grant what it needs through scopes.",
        references=(DESCOPE_AUTHORIZATION_INFO, RFC9700_PRIVILEGES),
        check=_force_all_authorization_info,
    ),
    for_clients(CALLBACK_PLAIN_HTTP, "MCP019"),
    for_clients(CALLBACK_WILDCARD, "MCP020"),
    for_clients(CALLBACK_FRAGMENT, "MCP021"),
    for_clients(CALLBACK_CUSTOM_SCHEME, "MCP022"),
)


def rules_by_id(rules: Sequence[Rule]) -> dict[str, Rule]:
    return {rule.id: rule for rule in rules}


def catalogue_markdown(rules: Sequence[Rule]) -> str:
    """The README's rule catalogue: one row per rule, then each rule's parameters."""
    lines = [
        "| id | name | severity | applies to | flags | why | sources |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule in rules:
        sources = "; ".join(f"[{ref.title}]({ref.url})" for ref in rule.references)
        lines.append(
            f"| {rule.id} | `{rule.name}` | {rule.severity} | {rule.applies_to} | {rule.summary} | "
            f"{rule.rationale} | {sources} |"
        )
    params = [(rule, name, param) for rule in rules for name, param in rule.params.items()]
    if params:
        lines += ["", "| rule | parameter | default | meaning |", "|---|---|---:|---|"]
        lines += [f"| {rule.id} | `{name}` | {p.default} | {p.description} |" for rule, name, p in params]
    return "\n".join(lines) + "\n"
