"""Identity providers behind one interface (see base.py). Registry: provider name -> lazily imported module."""
