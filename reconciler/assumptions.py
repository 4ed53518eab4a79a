"""Every behaviour of Descope's MCP management API that public material does not settle, in one place.

The wire reference (``shared/reference/descope-mcp-api.md``) marks these [assume]. The emulator
behaves as each one says (tests flip one and see it follow), and the reconciler reads from here those
it relies on, so that a run against a live project (``pytest --live``) that shows otherwise is
corrected by changing one constant. REGISTRATION_DYNAMIC and REGISTRATION_CIMD only name the values
that tests stage on clients the reconciler does not manage.
"""

from __future__ import annotations

# The category a new scope goes to when neither its manifest nor the live server says: neither the API
# reference nor Descope's Go SDK ties `values` to a category. A scope with values grants connections,
# so it goes to connectionsScopes; any other to permissionsScopes (reconciler.scopes.default_category).
DEFAULT_CATEGORY_WITH_VALUES = "connections"
DEFAULT_CATEGORY = "permissions"

# Search paging: default and maximum `limit` are unpublished. The emulator serves pages of at most
# this many clients, so that the client's paging to `total` is exercised.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 100

# `servers/all` has no published paging: the emulator answers with every server, the client reads one
# answer. Nothing here can say what a paged answer would look like, so there is no switch for it.

# Deleting a server (one or in bulk) deletes its clients. Were it False, the emulator would refuse to
# delete a server that has clients (400, VALIDATION_FAILURE_CODE), deleting nothing.
SERVER_DELETE_CASCADES = True

# Bulk deletes ignore ids that do not exist. Were it False, the emulator would answer 404
# (INVALID_ARGUMENTS_CODE) naming them, deleting nothing.
BULK_DELETE_IGNORES_ABSENT_IDS = True

# Names are not known to be unique: the API accepts duplicates, the reconciler reports ambiguity. Were
# it False, the emulator would refuse a create or update that repeats a sibling's name (400,
# VALIDATION_FAILURE_CODE): another server's, or another client's of the same server. Its admin seed
# never refuses one, so that tests can stage any live state.
DUPLICATE_NAMES_ACCEPTED = True

# Responses leave out zero values (false, "", 0, [], {}), as protobuf-backed APIs usually do.
RESPONSES_OMIT_ZERO_VALUES = True

# Status codes for errors other than rate limiting are unpublished.
STATUS_BAD_REQUEST = 400  # validation, missing arguments
STATUS_UNAUTHORIZED = 401  # missing or malformed bearer, wrong key
STATUS_FORBIDDEN = 403  # the bearer's project is not this project
STATUS_NOT_FOUND = 404  # unknown server or client id

# Error codes the emulator returns. Only RATE_LIMITED_CODE is published; never branch on the others.
RATE_LIMITED_CODE = "E130429"
MALFORMED_REQUEST_CODE = "E011001"
MISSING_ARGUMENTS_CODE = "E011002"
VALIDATION_FAILURE_CODE = "E011003"
INVALID_ARGUMENTS_CODE = "E011004"
UNAUTHORIZED_CODE = "E011005"  # not published; the emulator's choice

# registrationType and status values are unpublished; `verified` was seen in production.
REGISTRATION_PRE_REGISTERED = "preRegistered"
REGISTRATION_DYNAMIC = "dcr"
REGISTRATION_CIMD = "cimd"
CLIENT_STATUS_ACTIVE = "verified"

# Responses of the delete calls: an empty object.
DELETE_RESPONSE: dict[str, object] = {}
