"""Triggers (run by the triggerer) behind the deferrable sensors of this provider."""
