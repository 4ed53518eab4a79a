"""A Secret never shows itself."""

from __future__ import annotations

import copy
import json
import logging
import pickle

import pytest

from reconciler.secret import Secret

CANARY = "canary-secret-value-3f9a"


def test_every_rendering_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(CANARY)
    rendered = [
        str(secret),
        repr(secret),
        f"{secret}",
        f"{secret!r}",
        "%s" % secret,  # noqa: UP031 - the old formatting path must redact too
        str([secret]),
        str({"s": secret}),
    ]
    logging.getLogger("test").warning("secret is %s", secret)
    assert all(CANARY not in text for text in rendered)
    assert CANARY not in caplog.text
    assert secret.reveal() == CANARY


def test_it_cannot_be_serialized_or_copied_out() -> None:
    secret = Secret(CANARY)
    with pytest.raises(TypeError):
        json.dumps({"s": secret})
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        copy.deepcopy(secret)


def test_equality_compares_values() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    with pytest.raises(ValueError, match="non-empty"):
        Secret("")
