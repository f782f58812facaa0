"""Example handlers and the live demo for foreman-rt."""
