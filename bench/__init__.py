"""Benchmarks: `python -m bench [storage|intake|latency|polling|memory|all] [--quick]`.

Each prints its figures and, where there is one, the baseline measured in the same run beside
them. Results for this machine are kept in bench/RESULTS.md.
"""
