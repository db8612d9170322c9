"""The in-process gateway tests of test_gateway.py again, with the asyncio runtime on
uvloop: ``[server] event_loop = "auto"`` (the default) runs it there wherever uvloop is
installed, and the ``gateway`` extra installs it. (``mtlscore serve`` in the subprocess
tests already does: test_gateway.py's SIGHUP/SIGTERM flow, the nginx and demo tests.)"""

from __future__ import annotations

import pytest
from _gateway import UVLOOP, Backend
from test_gateway import (  # noqa: F401 - the tests and fixtures collected again here
    env,
    test_admin_metrics_and_graceful_shutdown,
    test_allow_mode_forwards_invalid_and_missing_with_verdict,
    test_behind_nginx_as_a_trusted_proxy,
    test_curl_reference_flow,
    test_deferred_engine_reject_mode_answers_json_for_everything,
    test_forward_with_identity_headers_and_stripping,
    test_openssl_s_client,
    test_reject_mode_status_paths,
    test_reload_during_traffic,
    test_replacing_a_trust_file_reloads,
    test_streaming_bodies_keepalive_and_limits,
    test_the_start_line_names_the_event_loop_it_runs_on,
    test_upstream_unavailable_502_and_timeout_504,
    upstream,
)

pytest.importorskip("uvloop")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> Backend:
    return UVLOOP
