"""A running pgha cluster seen from outside, as tests and benchmarks use it: Patroni's REST API, SQL through
HAProxy, a writer that records every acknowledged commit, faults on hosts, a watch for two primaries."""
