"""Generation retry processor: rescue stuck generations and retry them with service authority."""

__version__ = "0.1.0"
