"""The services built on triosock: echo, time, chat."""
