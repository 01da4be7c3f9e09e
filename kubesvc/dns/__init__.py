"""Cluster DNS (kubernetes/dns specification 1.1.0, CoreDNS kubernetes plugin behaviour).

records: Services/EndpointSlices/Namespaces -> zone records (pure).
answers: precomputed wire responses and every rcode decision (sans-I/O).
server:  UDP/TCP listeners, upstream forwarding, informers, /metrics /health /ready.
"""
