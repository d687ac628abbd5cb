"""Tests of the tunnel client (issue 5)."""
