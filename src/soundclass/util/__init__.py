"""One of each shared mechanism, below every pipeline stage.

Stage 1 (imports only errors and config).  ``atomic`` (the one atomic writer),
``csvfile`` (the one CSV writer: UTF-8 with surrogateescape, RFC 4180
quoting), ``hashing`` (the one file hasher), ``failures`` (the one
"this file failed" record), ``executors`` (where batch work runs: process,
serial, dask), ``pool`` (the one chunked pool runner, with crashed-worker
isolation; workers die with their parent), ``progress`` (the one progress bar).
"""
