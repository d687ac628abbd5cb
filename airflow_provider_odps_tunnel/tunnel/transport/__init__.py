"""HTTP to the service and tunnel endpoints: connections, retries, paths, endpoint discovery.

:class:`rest.RestClient` signs each request (the v2 scheme of
:mod:`..codec.signing`), retries what the service says may be retried, and maps error
answers onto :mod:`..errors`; :mod:`connection` holds the credentials, endpoints and
pooled clients every tunnel starts from; :mod:`resources` spells the resource paths of projects, schemas,
tables, partitions, instances and volumes; :mod:`endpoint` asks the service which tunnel
endpoint serves a project and quota. Nothing here knows what a session is.
"""
