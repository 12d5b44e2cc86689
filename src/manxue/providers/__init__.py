"""Upstream adapters behind one small protocol (see base.py), chosen by kind in registry.py."""
