"""Trio adapters that turn sockets into message channels."""
