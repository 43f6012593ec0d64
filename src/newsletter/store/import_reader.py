"""The reader process of a large import (see ``importer._ProcessReader``; its work is in
import_batches.py): parses and validates rows on another core and pickles batches to stdout. Run as a script by path, so the child
imports the very package its parent runs (whatever its sys.path)."""

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the folder holding newsletter/
    from newsletter.store.import_batches import reader_child_main

    reader_child_main()
