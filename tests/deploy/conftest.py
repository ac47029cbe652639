"""Fixtures of the deployment tests: the chart renderer, built once per session."""

from __future__ import annotations

import pytest

from tests.deploy.render import Renderer, build_renderer


@pytest.fixture(scope="session")
def render() -> Renderer:
    """Renders deploy/helm/kext like `helm template` (see tests/deploy/render.py)."""
    return Renderer(build_renderer())
