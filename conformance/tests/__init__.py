"""The conformance suite (pytest). Not part of the installed package."""
