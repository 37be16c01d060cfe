"""Performance layer over the pipeline core: SLOs, capacity planning, the optimizer and their pages.

It calls down into the core and listens to its signals; the core imports nothing of it
(tests/test_architecture.py)."""
