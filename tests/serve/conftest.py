"""One real Prometheus over the incident history, shared by the serve tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.prom import prometheus_over
from tests.serve.stack import incident_history


@pytest.fixture(scope="session")
def prometheus_url() -> Iterator[str]:
    with prometheus_over(incident_history()) as url:
        yield url
