"""Airflow sensors of the MaxCompute Tunnel provider."""
