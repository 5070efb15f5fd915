"""Command-line interface: parse, call the library, render. No math lives here."""
