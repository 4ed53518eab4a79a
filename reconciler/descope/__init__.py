"""The Descope boundary: every endpoint, wire shape and assumption of Descope's Management API.

One module per surface on one shared transport, and the pure modules beside them:

- ``endpoints`` (pure): :class:`~reconciler.descope.endpoints.Endpoint`, :class:`Endpoints`, and every
  endpoint of both surfaces side by side: the MCP Server API's servers, the clients of a server (on
  either surface), and the Resources surface's MCP servers; each with where it comes from.
- ``wire`` (pure): answers decoded and type-checked; live servers and clients as the API returns
  them, written back whole; the live state of a project; the surfaces (``Surface``).
- ``resource_wire`` (pure): a Resource of type ``mcp`` mapped to the MCP-server shape and back.
- ``assumptions`` (pure): every behaviour of Descope's API that public material does not settle, one
  constant each; the emulator honours them and the reconciler reads those it relies on.
- ``transport``: the shared transport (the only module here that imports httpx): the HTTP connection,
  the throttle, retries, deadlines, size bounds, redaction, base-URL checks, and calls that must take
  effect at most once.
- ``mcp_servers``: the MCP Server API's calls: servers, and the clients of a server on either surface.
- ``resources``: the Resources surface's calls: MCP servers made as Resources.
- ``client``: :class:`DescopeClient`, both surfaces' calls on one transport: what the rest of the
  reconciler holds.

This module imports nothing: the pure core imports the pure modules, and must not pull httpx in
through the package.
"""
