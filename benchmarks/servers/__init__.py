"""Peer servers for the benchmarks, one module per stack; each runs as its own process.

Every server binds 127.0.0.1 on the port given with ``--port`` (0 by default: any free port),
prints ``127.0.0.1:PORT`` on stdout once it accepts, and serves until it is killed.
"""
