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

# ---- Resources surface ----------------------------------------------------------------------------

# A Resource has no tags of its own. Its dynamicRegistrationSettings.tags are documented as defaults
# for the clients that register themselves; a production client of the live API keeps its server tags
# there, and so does the reconciler: the ownership and protect tags of an MCP server made as a Resource
# live in that list (reconciler.descope.resource_wire). Nothing here can switch that: there is no other
# place a Resource carries tags.
# Descope's newer /v1/mgmt/resource* surface, on which its console makes MCP servers. Its wire reference
# (``shared/reference/descope-resources-api.md``) marks these [assume]; the emulator honours each.

# A Resource's id: this prefix and 27 letters or digits. Third-party fixtures show "RS…"; the length is
# that of a legacy "MS…" id. Legacy MCP servers keep "MS".
RESOURCE_ID_PREFIX = "RS"

# The values of `type` a create or update may carry ("mcp" is documented, "api" seen in a third-party
# client); any other is refused (400, VALIDATION_FAILURE_CODE).
RESOURCE_TYPES = ("mcp", "api")

# What a create, or the Resource an update leaves, must have (400, MISSING_ARGUMENTS_CODE without one):
# third-party code always sends them, the console calls the name required.
RESOURCE_REQUIRED_FIELDS = ("name", "type")

# A Resource of type "mcp" must have a `uri`, on create and on update (400, MISSING_ARGUMENTS_CODE).
RESOURCE_URI_REQUIRED = True

# `uri` is unique in a project (a load by URI exists): a create or update giving another Resource's uri
# is refused (400, VALIDATION_FAILURE_CODE). Were it False, both are kept and a load by URI answers the
# one created first. Load by URI matches the exact string (no normalisation); there is no switch for it.
RESOURCE_URI_UNIQUE = True

# An update replaces every client-settable field (name, description, uri, type, scopes, userAccess,
# clientAccess, dynamicRegistrationSettings, and unknown ones): a field left out is reset. Were it False,
# an update is a patch: a top-level field left out (or null) keeps its value.
RESOURCE_UPDATE_IS_FULL_REPLACEMENT = True

# `type` cannot change on update (400, VALIDATION_FAILURE_CODE). Were it True, it can.
RESOURCE_TYPE_CHANGE_ALLOWED = False

# `version` is a decimal string, "1" on create and one more on each update, and an update's `version`
# is not checked. Were it True, an update carrying a version other than the stored one is refused with
# RESOURCE_VERSION_MISMATCH_STATUS (VALIDATION_FAILURE_CODE), nothing changed; one without is accepted.
RESOURCE_VERSION_CHECKED = False
RESOURCE_VERSION_MISMATCH_STATUS = 409

# The form of `createdTime` and `modifiedTime`, both strings: "rfc3339" (2025-01-02T03:04:05.678901Z)
# or "epoch" (decimal seconds since 1970). Clients must not parse them.
RESOURCE_TIME_FORMAT = "rfc3339"

# Deleting a Resource deletes its clients. Were it False, the emulator would refuse to delete a Resource
# that has clients (400, VALIDATION_FAILURE_CODE).
RESOURCE_DELETE_CASCADES = True

# Deleting an id that is no Resource is an error (404, INVALID_ARGUMENTS_CODE). Were it False, 200 {}.
RESOURCE_DELETE_ABSENT_IS_ERROR = True

# Only a Resource of type "mcp" has clients: the /v1/mgmt/mcp/server/client* endpoints refuse the id of
# an "api" Resource as they refuse an unknown server id (404). Were it False, any Resource has clients.
RESOURCE_CLIENTS_ONLY_FOR_MCP = True

# The scopes of a client of a Resource are not checked against the Resource's scope names, just as
# those of a client of an MCP server are not checked against its approvedScopes (a third-party client
# reports that Descope refuses an unregistered one). Were it True, a client create or update naming a
# scope the Resource does not have is refused (400, VALIDATION_FAILURE_CODE).
RESOURCE_CLIENT_SCOPES_CHECKED = False

# The three loads are GET only, arguments in the query: another method is answered 405. Were it True,
# they would also answer POST, arguments in the query or the JSON body.
RESOURCE_LOADS_ACCEPT_POST = False

# `resources/load` has no published paging: the emulator answers every Resource of both types, and
# `total` counts them. Nothing says what a paged answer would look like, so there is no switch for it.
