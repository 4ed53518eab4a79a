"""Every behaviour of Descope's MCP management API that public material does not settle, in one place.

The wire reference (``shared/reference/descope-mcp-api.md``) marks these [assume]. The client and
the emulator both read them from here, so that a run against a live project (``pytest --live``)
that shows otherwise is corrected by changing one constant.
"""

from __future__ import annotations

# Search paging: default and maximum `limit` are unpublished. The emulator serves pages of at most
# this many clients, so that the client's paging to `total` is exercised.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 100

# `servers/all` has no published paging: it returns every server.
SERVERS_ALL_IS_PAGED = False

# Deleting a server deletes its clients.
SERVER_DELETE_CASCADES = True

# Bulk deletes ignore ids that do not exist.
BULK_DELETE_IGNORES_ABSENT_IDS = True

# Names are not known to be unique: the API accepts duplicates, the reconciler reports ambiguity.
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
