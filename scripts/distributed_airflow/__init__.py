"""A distributed Airflow (CeleryExecutor, PostgreSQL, Redis) on one machine, for the provider.

``python -m distributed_airflow`` (from ``scripts/``; ``make demo-distributed``) starts it, runs the
mapped load chain against the embedded emulator with a per-connection bandwidth cap, and
prints a table: throughput with 1, 2 and 3 workers, a worker killed mid-block, the scheduler
restarted mid-run, peak memory per worker. ``tests/distributed`` runs the same scenario
scaled down. Modules: ``services`` (PostgreSQL, Redis, process groups), ``cluster`` (the
Airflow components and Celery workers), ``scenario`` (source data, runs and the
exactly-once checks), ``dags/`` (the DAG they run).
"""
