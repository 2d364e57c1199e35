"""``evaluate`` metric modules that live in this repository and are loaded by path."""
