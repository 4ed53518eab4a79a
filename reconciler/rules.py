"""The built-in security rules for MCP servers and their clients, each with the source it comes from (pure).

Ids are stable (``MCP001``...): a team's policy, a suppression and a SARIF alert name them. A rule
judges only fields that are there (see :class:`reconciler.findings.Subject`). The README's catalogue
is generated from this module (``catalogue_markdown``), so the two cannot disagree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from urllib.parse import urlsplit

from reconciler.findings import Hit, Reference, Rule, Subject

# ---- the sources -----------------------------------------------------------------------------------

MCP_AUTH = "https://modelcontextprotocol.io/specification/2025-06-18/basic/authorization"
MCP_SECURITY = "https://modelcontextprotocol.io/specification/2025-06-18/basic/security_best_practices"
RFC = "https://www.rfc-editor.org/rfc/rfc{number}.html#section-{section}"


def rfc(number: int, section: str, title: str) -> Reference:
    return Reference(f"RFC {number} §{section}: {title}", RFC.format(number=number, section=section))


MCP_REDIRECTS = Reference(
    "MCP Authorization: Communication Security (redirect URIs MUST be localhost or HTTPS)",
    f"{MCP_AUTH}#communication-security",
)

# ---- helpers the rules share --------------------------------------------------------------------------


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): where RFC 8252 §7.3 and the MCP
    specification allow plain http for a redirect."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def callback_urls(subject: Subject) -> Iterator[tuple[int, str]]:
    """The subject's own callback URLs, with their index in ``approvedCallbackUrls``."""
    for index, url in enumerate(subject.fields.get("approvedCallbackUrls") or ()):
        if isinstance(url, str):
            yield index, url


def _scheme_and_host(url: str) -> tuple[str, str | None]:
    try:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), parts.hostname
    except ValueError:
        return "", None


# ---- the rules -------------------------------------------------------------------------------------------


def _cimd_any_domain(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
    cimd = subject.fields.get("cimdSettings") or {}
    if not isinstance(cimd, Mapping) or not cimd.get("enabled"):
        return
    policies = (cimd.get("domainPolicies") or {}).get("policies") or ()
    for index, policy in enumerate(policies):
        pattern = str(policy.get("domainPattern") or "") if isinstance(policy, Mapping) else ""
        if policy.get("enabled") and pattern and not pattern.replace("*", "").replace(".", ""):
            yield Hit(
                f"CIMD domain policy '{pattern}' lets a client metadata document on any domain register",
                ("cimdSettings", "domainPolicies", "policies", index, "domainPattern"),
                pattern,
            )


def _callback_plain_http(subject: Subject, _params: Mapping[str, int]) -> Iterator[Hit]:
    for index, url in callback_urls(subject):
        scheme, host = _scheme_and_host(url)
        if scheme == "http" and not is_loopback_host(host):
            yield Hit(
                f"callback URL '{url}' is plain http on a host that is not loopback: an authorization "
                "code sent there can be read on the network",
                ("approvedCallbackUrls", index),
                url,
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
        references=(
            Reference(
                "MCP Authorization: Client ID Metadata Documents",
                "https://modelcontextprotocol.io/specification/2025-11-25/basic/authorization",
            ),
            Reference("Descope: MCP server CIMD settings", "https://docs.descope.com/mcp"),
        ),
        check=_cimd_any_domain,
    ),
    Rule(
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
            rfc(9700, "2.1", "Protecting Redirect-Based Flows"),
            rfc(8252, "7.3", "Loopback Interface Redirection"),
        ),
        check=_callback_plain_http,
    ),
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
