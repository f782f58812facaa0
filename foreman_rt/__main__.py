"""`python -m foreman_rt` is the `foreman-rt` command."""

from foreman_rt.cli import main

main()
