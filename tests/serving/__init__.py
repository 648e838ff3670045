"""Tests of vlkge.serving (a package, so its conftest does not shadow tests/encoders/conftest)."""
