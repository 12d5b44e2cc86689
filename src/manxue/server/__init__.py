"""The HTTP face: routes under /v1, health, readiness and metrics."""
