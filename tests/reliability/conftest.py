"""Reliability probes (issue: no request can freeze the server, no rerun or kill can mix or lose data): each test
reproduces a failure a hostile user found, with the real parts (real files, real processes, a real server)."""
