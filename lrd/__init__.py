"""lrd: how far back in time can each architecture learn?"""

__version__ = "0.1.0"
