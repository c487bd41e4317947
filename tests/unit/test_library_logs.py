"""Records logged through the standard library (asyncio, libraries) come out as JSON lines
like the server's own, so stdout stays one JSON object per line."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from resolver.service import observability


def test_an_asyncio_error_is_a_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        observability.configure_logging("info", worker=3)
        try:
            raise TimeoutError(110, "Connection timed out")
        except TimeoutError:
            logging.getLogger("asyncio").error(
                "Unhandled exception in client_connected_cb\ntransport: <closed>", exc_info=True
            )
        logging.getLogger("some.library").info("below the level: not written")
        lines = capsys.readouterr().out.splitlines()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
        observability._worker = None
    [line] = lines
    record = json.loads(line)
    assert record["event"] == "library_log" and record["logger"] == "asyncio"
    assert record["detail"].startswith("Unhandled exception in client_connected_cb\n")
    assert (record["level"], record["worker"]) == ("error", 3)
    assert "Connection timed out" in record["exception"] and record["timestamp"]
