"""Pulumi entry point: the program lives in program.py so tests can import it."""

import program

program.main()
