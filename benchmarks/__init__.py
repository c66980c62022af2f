"""Speed and memory benchmarks (run as modules, e.g. ``python -m benchmarks.n3block``; see docs/performance.md)."""
