"""Renderers: turn results (problems, plans) into text for terminals, JSON, markdown and GitHub."""
