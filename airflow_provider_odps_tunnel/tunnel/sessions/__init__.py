"""One module per kind of tunnel session, each speaking that session's part of the protocol.

Table download, upload (blocks), stream upload, upsert, preview, instance download and
volume upload/download sessions: create or reload on the server, open readers and
writers from :mod:`..io`, commit. :mod:`table_base` holds what every table session
shares (its resource, schema loading and status). The tunnels at the top level of the
package create these; users rarely construct one directly.
"""
