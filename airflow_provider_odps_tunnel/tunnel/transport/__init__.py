"""HTTP to the service and tunnel endpoints: signing, retries, paths, endpoint discovery.

:class:`rest.RestClient` signs each request (the ODPS v2 scheme of
:mod:`signing`), retries what the service says may be retried, and maps error answers
onto :mod:`..errors`; :mod:`resources` spells the resource paths of projects, schemas,
tables, partitions, instances and volumes; :mod:`endpoint` asks the service which tunnel
endpoint serves a project and quota. Nothing here knows what a session is.
"""
