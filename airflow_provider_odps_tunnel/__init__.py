"""Apache Airflow provider for Alibaba Cloud MaxCompute (ODPS) Tunnel.

The package has three parts: ``tunnel``, a standalone client for the MaxCompute Tunnel
bulk upload/download protocol (record and Arrow codecs, sessions, blocks); ``emulator``,
an embedded tunnel server for tests and demos; and the Airflow integration (hooks,
operators, sensors and triggers) registered through the ``apache_airflow_provider``
entry point. Importing this top-level package, or ``tunnel``, must never import Airflow,
so the client can be used without it.
"""

__version__ = "0.1.0"
