"""`make bench`: every layer of the product measured side by side on this machine.

Each benchmark is one module (kernel, digits, status, listing, enqueue, soak; memory is watched
during all of them) that returns a report Section; `python -m bench` runs them in order against
real stacks started by testing/stack.py, prints the table and writes BENCHMARKS.md.
"""
