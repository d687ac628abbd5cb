"""Airflow operators of the MaxCompute Tunnel provider: uploads, exports, upserts, streams, SQL."""
