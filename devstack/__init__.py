"""Local stand-ins for the services the platform talks to, started as real processes on loopback.

Used by the tests (and the dev stack): every service is the real server, fetched from a package
registry and pinned.
"""
