"""PERK: long-context reasoning as parameter-efficient test-time learning."""
__version__ = "0.1.0"
