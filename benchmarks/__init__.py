"""triosock benchmarks: ``python -m benchmarks.run`` (or ``nox -s bench``); see README.md."""
