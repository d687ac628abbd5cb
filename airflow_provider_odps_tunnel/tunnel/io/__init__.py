"""Readers and writers that move records and Arrow batches through one tunnel request.

Record and Arrow readers (which resume at the current row after a broken stream),
block writers and the buffered writers that cut blocks, the streamed request body that
hands chunks to the HTTP layer while the caller is still producing them, and the spool
that lets a whole body be sent again after a failure. Built on :mod:`..codec`; they get
their HTTP requests as callables from the sessions, so they never talk to a server
themselves.
"""
