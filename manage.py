#!/usr/bin/env python
"""Django's command-line utility for embedportal (the same as the `embedportal` console script)."""

from embedportal.__main__ import main

if __name__ == "__main__":
    main()
