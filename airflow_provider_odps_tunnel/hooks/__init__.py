"""Airflow hooks of the MaxCompute Tunnel provider (see ``.tunnel``)."""
