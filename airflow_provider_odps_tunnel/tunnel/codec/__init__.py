"""Wire codecs and the data model: what the bytes of the tunnel mean, with no I/O.

ODPS types, table schemas, records and partition specs; the record wire format (a
pure-Python reference and the compiled ``_record_codec_c`` with the same bytes, values and
errors); Arrow type mapping and the CRC-framed Arrow stream; volume framing; CRC32C; body
compression; the upsert bucket hasher; the v2 request signature (the canonical string
both ends must build byte for byte). It imports nothing else of ours but the exception
hierarchy in :mod:`..errors`, so the emulator can decode and encode what the client sends
without loading the HTTP client.
"""
