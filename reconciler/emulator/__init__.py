"""A local emulator of Descope's MCP management API, for tests, demos and offline development."""

from __future__ import annotations

from reconciler.emulator.app import EmulatorConfig, create_app
from reconciler.emulator.server import RunningEmulator, running_emulator, serve

__all__ = ["EmulatorConfig", "RunningEmulator", "create_app", "running_emulator", "serve"]
