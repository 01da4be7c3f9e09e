"""Hostile requests for the API server: payloads, a raw HTTPS client and a /healthz prober.

Shared by the hostile-input tests (tests/unit, tests/e2e) and bench/hostile_bench.py.
"""
