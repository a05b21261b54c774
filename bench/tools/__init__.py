"""Measurement tools of the harness itself, run by make targets (they time, they do not assert):
`speed` (make bench-speed), `benchmarks` (make bench-fresh, bench-parallel), `gpu_smoke`
(make bench-gpu-smoke). Nothing in the library imports them."""
