"""Recipient keys behind one small interface; the URI scheme picks the module."""
