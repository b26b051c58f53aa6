"""Command-line front ends: parse arguments, call the library, print. No business logic here."""
