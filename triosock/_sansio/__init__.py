"""Sans-IO protocol cores: bytes in, messages or events out. Nothing here imports trio."""
