"""A local emulator of Descope's MCP server and Resource management APIs, for tests and demos."""

from __future__ import annotations

from reconciler.emulator.app import EmulatorConfig, create_app
from reconciler.emulator.server import RunningEmulator, running_emulator, serve

__all__ = ["EmulatorConfig", "RunningEmulator", "create_app", "running_emulator", "serve"]
