"""Shared test fixtures: small synthetic videos, made once per session."""
