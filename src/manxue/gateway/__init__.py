"""Routing: choose a deployment, retry, fail over and hedge before the first byte."""
