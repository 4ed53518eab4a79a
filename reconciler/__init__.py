"""mcp-reconciler: declarative GitOps for Descope MCP Servers and their OAuth clients."""
