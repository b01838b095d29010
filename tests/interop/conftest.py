"""The live-server fixtures of tests/http/test_verify_live.py, shared with the interop tests."""

from tests.http.test_verify_live import http, live, live_overrides

__all__ = ["http", "live", "live_overrides"]
